/*
 * tests/child_gateway.c — the real gateway as a child process and an HTTPS
 * client as an organisation of the test PKI (tests/child_gateway.h says who
 * owns what). Used by the benchmarks and by the tests that run the binary.
 */
#include "tests/child_gateway.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 100

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bool cg_make_pki(const char *script, const char *dir, char *err, size_t errlen)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' >/dev/null", script, dir);
    if (system(cmd) == 0)
        return true;
    snprintf(err, errlen, "certs/make-test-pki failed (%s)", dir);
    return false;
}

/* ---- the gateway ---- */

/* In the child: output to the log, then exec; 127 when either fails. */
_Noreturn static void exec_gateway(const cg_options *o)
{
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%u", o->port);
    int fd = open(o->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int out = o->stdout_to_null ? open("/dev/null", O_WRONLY) : fd;
    if (fd < 0 || out < 0 || dup2(fd, STDERR_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
        _exit(127);
    if (o->pki_script)
        setenv("FHIRGW_PKI_SCRIPT", o->pki_script, 1);
    if (o->config)
        execl(o->fhirgw, "fhirgw", "serve", "--config", o->config, "--dev", o->dev_dir, "--port", port_arg,
              (char *)NULL);
    else
        execl(o->fhirgw, "fhirgw", "serve", "--dev", o->dev_dir, "--port", port_arg, (char *)NULL);
    _exit(127);
}

/* The log's first size - 1 bytes into text. */
static void read_log(const char *log, char *text, size_t size)
{
    FILE *l = fopen(log, "r");
    size_t n = l ? fread(text, 1, size - 1, l) : 0;
    text[n] = '\0';
    if (l)
        fclose(l);
}

/* Whether it serves yet: "serving" in the log, or (ready_as) GET /metadata answered 200. */
static bool serving(const cg_options *o, cg_client *probe, char *text, size_t size)
{
    if (probe)
        return cg_request(probe, "GET", "/metadata", NULL, 0) == 200;
    read_log(o->log, text, size);
    return strstr(text, "serving") != NULL;
}

/* Polls until the gateway serves, exits, or wait_ms pass. */
static bool wait_serving(cg_gateway *g, const cg_options *o, char *err, size_t errlen)
{
    cg_client probe, *p = NULL;
    if (o->ready_as) {
        if (!cg_client_open(&probe, o->dev_dir, o->ready_as, o->port, 10, err, errlen))
            return false;
        p = &probe;
    }
    char text[8192];
    bool ok = false, exited = false;
    for (int waited = 0; !ok && !exited && waited <= o->wait_ms; waited += POLL_MS) {
        ok = serving(o, p, text, sizeof text);
        exited = !ok && waitpid(g->pid, NULL, WNOHANG) == g->pid;
        if (!ok && !exited)
            sleep_ms(POLL_MS);
    }
    if (p)
        cg_client_close(p);
    if (exited) {
        g->pid = -1;
        read_log(o->log, text, sizeof text);
        snprintf(err, errlen, "fhirgw serve exited: %s", text);
    } else if (!ok) {
        snprintf(err, errlen, "fhirgw serve did not start within %d ms (log: %s)", o->wait_ms, o->log);
    }
    return ok;
}

bool cg_start(cg_gateway *g, const cg_options *o, char *err, size_t errlen)
{
    g->pid = -1;
    g->port = o->port;
    if (!o->port) {
        snprintf(err, errlen, "cg_start: a port must be chosen (serve does not log an ephemeral one)");
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return false;
    }
    if (pid == 0)
        exec_gateway(o);
    g->pid = pid;
    if (wait_serving(g, o, err, errlen))
        return true;
    if (g->pid > 0)
        cg_stop(g, SIGKILL, NULL, NULL, 0);
    return false;
}

bool cg_kill(const cg_gateway *g, int sig, char *err, size_t errlen)
{
    if (g->pid > 0 && kill(g->pid, sig) == 0)
        return true;
    if (err)
        snprintf(err, errlen, "kill(%d, %d): %s", (int)g->pid, sig, g->pid > 0 ? strerror(errno) : "not running");
    return false;
}

bool cg_reap(cg_gateway *g, int timeout_ms, int *status, char *err, size_t errlen)
{
    int st = -1;
    pid_t got = 0;
    if (timeout_ms < 0)
        got = waitpid(g->pid, &st, 0);
    for (int waited = 0; timeout_ms >= 0 && (got = waitpid(g->pid, &st, WNOHANG)) == 0 && waited < timeout_ms;
         waited += POLL_MS)
        sleep_ms(POLL_MS);
    if (status)
        *status = st;
    if (got == g->pid) {
        g->pid = -1;
        return true;
    }
    if (err)
        snprintf(err, errlen, "fhirgw serve (pid %d) did not exit%s", (int)g->pid,
                 got < 0 ? ": waitpid failed" : " in time");
    return false;
}

bool cg_stop(cg_gateway *g, int sig, int *status, char *err, size_t errlen)
{
    if (g->pid <= 0)
        return true;
    return cg_kill(g, sig, err, errlen) && cg_reap(g, -1, status, err, errlen);
}

/* ---- an organisation's HTTPS client ---- */

static size_t keep_body(char *data, size_t size, size_t n, void *arg)
{
    cg_client *c = arg;
    size_t len = size * n;
    char *grown = realloc(c->body, c->len + len + 1);
    if (!grown)
        return 0;
    c->body = grown;
    memcpy(c->body + c->len, data, len);
    for (const char *at = data, *end = data + len; (at = memchr(at, '\n', (size_t)(end - at))); at++)
        c->lines++;
    c->len += len;
    c->body[c->len] = '\0';
    return len;
}

bool cg_client_open(cg_client *c, const char *pki_dir, const char *who, unsigned port, long timeout_s, char *err,
                    size_t errlen)
{
    char cert[1024], key[1024], ca[1024];
    snprintf(cert, sizeof cert, "%s/clients/%s.crt", pki_dir, who);
    snprintf(key, sizeof key, "%s/clients/%s.key", pki_dir, who);
    snprintf(ca, sizeof ca, "%s/ca.pem", pki_dir);
    memset(c, 0, sizeof *c);
    snprintf(c->base, sizeof c->base, "https://127.0.0.1:%u", port);
    c->curl = curl_easy_init();
    c->headers = curl_slist_append(NULL, "Content-Type: application/fhir+json");
    if (!c->curl || !c->headers) {
        cg_client_close(c);
        snprintf(err, errlen, "cannot make a libcurl handle");
        return false;
    }
    curl_easy_setopt(c->curl, CURLOPT_SSLCERT, cert); /* libcurl copies the strings */
    curl_easy_setopt(c->curl, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c->curl, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L); /* clients run on threads of their own */
    return true;
}

bool cg_client_header(cg_client *c, const char *line)
{
    struct curl_slist *more = curl_slist_append(c->headers, line);
    if (more)
        c->headers = more;
    return more != NULL;
}

/* The header list of this request: the body's headers, or none; with an Accept first when one is asked for
 * (then *temporary is the list to free afterwards). */
static struct curl_slist *request_headers(cg_client *c, bool with_body, struct curl_slist **temporary)
{
    *temporary = NULL;
    if (!c->accept)
        return with_body ? c->headers : NULL;
    char accept[256];
    snprintf(accept, sizeof accept, "Accept: %s", c->accept);
    struct curl_slist *h = curl_slist_append(NULL, accept);
    for (const struct curl_slist *i = with_body ? c->headers : NULL; h && i; i = i->next)
        h = curl_slist_append(h, i->data);
    *temporary = h;
    return h;
}

long cg_request(cg_client *c, const char *method, const char *path_or_url, const char *body, size_t len)
{
    char url[2048];
    if (!strncmp(path_or_url, "https://", 8) || !strncmp(path_or_url, "http://", 7))
        snprintf(url, sizeof url, "%s", path_or_url);
    else
        snprintf(url, sizeof url, "%s%s", c->base, path_or_url);
    free(c->body);
    c->body = NULL;
    c->len = c->lines = 0;
    struct curl_slist *temporary;
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, request_headers(c, body != NULL, &temporary));
    if (body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)(len ? len : strlen(body)));
    } else {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    long status = 0;
    if (curl_easy_perform(c->curl) == CURLE_OK)
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL); /* temporary is freed below */
    curl_slist_free_all(temporary);
    return status;
}

void cg_client_close(cg_client *c)
{
    curl_slist_free_all(c->headers);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->body);
    memset(c, 0, sizeof *c);
}

/* The first line of a small file into out (its newline removed); false when it cannot be read. */
static bool read_line(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    bool ok = f && fgets(out, (int)size, f);
    if (f)
        fclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok;
}

static int by_role(const void *a, const void *b)
{
    return strcmp(((const cg_role_cpu *)a)->role, ((const cg_role_cpu *)b)->role);
}

size_t cg_role_cpu_seconds(const cg_gateway *g, cg_role_cpu *roles, size_t max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)g->pid);
    DIR *d = opendir(path);
    size_t count = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char file[400], name[16], stat[128]; /* a thread name is 15 bytes at most */
        unsigned long long ns;
        snprintf(file, sizeof file, "%s/%s/comm", path, e->d_name);
        if (e->d_name[0] == '.' || !read_line(file, name, sizeof name))
            continue;
        snprintf(file, sizeof file, "%s/%s/schedstat", path, e->d_name);
        if (!read_line(file, stat, sizeof stat) || sscanf(stat, "%llu", &ns) != 1)
            continue;
        char *dash = strrchr(name, '-'); /* "http-3": the role is "http" */
        if (dash && dash[1] && strspn(dash + 1, "0123456789") == strlen(dash + 1))
            *dash = '\0';
        size_t i = 0;
        while (i < count && strcmp(roles[i].role, name))
            i++;
        if (i == count && count == max)
            continue;
        if (i == count) {
            memcpy(roles[count].role, name, sizeof name);
            roles[count++].seconds = 0;
        }
        roles[i].seconds += (double)ns / 1e9;
    }
    if (d)
        closedir(d);
    qsort(roles, count, sizeof *roles, by_role);
    return count;
}

double cg_cpu_seconds(const cg_gateway *g)
{
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)g->pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}
