/*
 * bench/bench_server.c — the HTTPS front with a trivial handler, for
 * bench/server.sh: every GET answers a fixed JSON body from memory, every
 * POST echoes its body's length. Independent of the FHIR application, so the
 * figures measure the server alone (TLS, HTTP parsing, workers, logging).
 *
 *   bench-server --pki DIR [--port N] [--ops-port N] [--workers N]
 *                [--body FILE] [--access-log FILE]
 *
 * DIR is a certs/make-test-pki directory. Runs until SIGINT or SIGTERM, then
 * stops gracefully. Prints "listening PORT OPS_PORT" on stdout once ready.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/http/server.h"

static srv_server *running;
static char *fixed_body;
static size_t fixed_len;

static void on_signal(int sig)
{
    srv_stop(running); /* async-signal-safe */
}

static void handle(srv_request *req, void *arg)
{
    srv_set_route(req, "bench");
    if (strcmp(srv_req_method(req), "POST") == 0) {
        size_t len;
        srv_req_body(req, &len);
        char *body = malloc(64);
        int n = body ? snprintf(body, 64, "{\"received\":%zu}", len) : 0;
        srv_set_header(req, "Content-Type", "application/fhir+json");
        srv_respond(req, 201, body, (size_t)n);
        return;
    }
    char *body = malloc(fixed_len);
    if (body)
        memcpy(body, fixed_body, fixed_len);
    srv_set_header(req, "Content-Type", "application/fhir+json");
    srv_set_header(req, "ETag", "W/\"1\"");
    srv_respond(req, 200, body, body ? fixed_len : 0);
}

static bool load_body(const char *path)
{
    if (!path) {
        static const char dflt[] = "{\"resourceType\":\"CarePlan\",\"id\":\"bench\",\"status\":\"active\","
                                   "\"intent\":\"plan\",\"subject\":{\"reference\":\"Patient/1\"}}";
        fixed_body = strdup(dflt);
        fixed_len = sizeof dflt - 1;
        return fixed_body != NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    fixed_body = malloc(size > 0 ? (size_t)size : 1);
    fixed_len = fixed_body && size > 0 ? fread(fixed_body, 1, (size_t)size, f) : 0;
    fclose(f);
    return fixed_body != NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-server --pki DIR [--port N] [--ops-port N] [--workers N] [--body FILE] "
                    "[--access-log FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *pki = NULL, *body_file = NULL, *log_file = NULL;
    srv_config cfg;
    srv_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--pki") == 0)
            pki = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            cfg.port = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--ops-port") == 0)
            cfg.ops_port = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--workers") == 0)
            cfg.workers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--body") == 0)
            body_file = argv[++i];
        else if (strcmp(argv[i], "--access-log") == 0)
            log_file = argv[++i];
        else
            usage();
    }
    if (!pki || !load_body(body_file))
        usage();
    char cert[4096], key[4096], ca[4096], crl[4096], err[512];
    snprintf(cert, sizeof cert, "%s/server.crt", pki);
    snprintf(key, sizeof key, "%s/server.key", pki);
    snprintf(ca, sizeof ca, "%s/ca-bundle.pem", pki);
    snprintf(crl, sizeof crl, "%s/crl.pem", pki);
    cfg.cert_file = cert, cfg.key_file = key, cfg.ca_file = ca, cfg.crl_file = crl;
    cfg.handler = handle;
    if (log_file)
        cfg.access_log_fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

    running = srv_new(&cfg, err, sizeof err);
    if (!running || !srv_start(running, err, sizeof err)) {
        fprintf(stderr, "bench-server: %s\n", err);
        srv_free(running);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("listening %u %u\n", srv_port(running), srv_ops_port(running));
    fflush(stdout);
    srv_wait(running);
    srv_free(running);
    free(fixed_body);
    if (cfg.access_log_fd >= 0)
        close(cfg.access_log_fd);
    return 0;
}
