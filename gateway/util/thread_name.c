/*
 * gateway/util/thread_name.c — see thread_name.h.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "gateway/util/thread_name.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#define TN_MAX 16 /* Linux: 15 bytes and the NUL */

void tn_name(pthread_t thread, const char *format, ...)
{
    char name[TN_MAX];
    va_list ap;
    va_start(ap, format);
    vsnprintf(name, sizeof name, format, ap); /* cut, not refused: pthread_setname_np fails on 16 bytes or more */
    va_end(ap);
    (void)pthread_setname_np(thread, name);
}
