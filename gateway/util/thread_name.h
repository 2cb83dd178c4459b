/*
 * gateway/util/thread_name.h — names for the gateway's threads (prefix tn_).
 *
 * What it is for: `top -H`, `ps -L`, perf, gdb and /proc/PID/task/N/comm
 * show every thread as "fhirgw" unless it is named; an operator asking which
 * thread is busy (the commit thread? a worker?) needs to tell them apart.
 * Each room names the threads it starts, by role: "http-0", "store-commit",
 * "store-sync", "store-ckpt", "doclog-sync", "relay-0", "purge",
 * "rules-check".
 *
 * Linux keeps 15 bytes of a name; a longer one is cut. Best effort: a
 * thread the system will not name keeps the process's name, which breaks
 * nothing. Memory: nothing is kept.
 */
#ifndef GATEWAY_UTIL_THREAD_NAME_H
#define GATEWAY_UTIL_THREAD_NAME_H

#include <pthread.h>

/* Names `thread` (printf-style). */
void tn_name(pthread_t thread, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
