/*
 * tests/test_random.c — random bytes and version 4 and 7 UUIDs (gateway/util/random.h)
 * and hex encoding (gateway/util/hex.h): the UUID's form, uniqueness across
 * threads, across the per-thread blocks and across fork, and the limits of
 * one draw.
 */
#include "gateway/util/hex.h"
#include "gateway/util/random.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* 8-4-4-4-12 lower-case hex digits, the version digit, the RFC's variant. */
static void expect_uuid_form(const char *u, char version)
{
    cr_assert_eq(strlen(u), 36, "%s", u);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(u[i], '-', "%s", u);
        else
            cr_assert(is_lower_hex(u[i]), "%s: '%c' at %d", u, u[i], i);
    }
    cr_assert_eq(u[14], version, "version %c: %s", version, u);
    cr_assert(strchr("89ab", u[19]) != NULL, "the RFC variant: %s", u);
}

Test(random, a_uuid_has_the_version_4_form)
{
    for (int n = 0; n < 1000; n++) {
        char u[37];
        memset(u, 'x', sizeof u);
        rnd_uuid4(u);
        expect_uuid_form(u, '4');
    }
}

/* Version 7: the time in milliseconds first, so that ids made later sort later; the rest random. */
Test(random, a_version_7_uuid_starts_with_its_time_and_sorts_by_it)
{
    struct timespec t0, t1;
    char first[37], u[37], later[37];
    clock_gettime(CLOCK_REALTIME, &t0);
    rnd_uuid7(first);
    clock_gettime(CLOCK_REALTIME, &t1);
    expect_uuid_form(first, '7');
    char hex[13];
    memcpy(hex, first, 8), memcpy(hex + 8, first + 9, 4), hex[12] = '\0';
    uint64_t ms = strtoull(hex, NULL, 16);
    cr_expect_geq(ms, (uint64_t)t0.tv_sec * 1000 + (uint64_t)t0.tv_nsec / 1000000, "%s", first);
    cr_expect_leq(ms, (uint64_t)t1.tv_sec * 1000 + (uint64_t)t1.tv_nsec / 1000000, "%s", first);
    for (int n = 0; n < 1000; n++) {
        rnd_uuid7(u);
        expect_uuid_form(u, '7');
        cr_assert_neq(strcmp(u, first), 0);
    }
    /* two made in the same millisecond (consecutive calls nearly always are) differ in their random bits */
    bool same_ms = false;
    for (int attempt = 0; attempt < 1000 && !same_ms; attempt++) {
        char a[37], b[37];
        rnd_uuid7(a);
        rnd_uuid7(b);
        if ((same_ms = !strncmp(a, b, 13)))
            cr_expect_neq(strcmp(a + 14, b + 14), 0, "%s and %s", a, b);
    }
    cr_expect(same_ms, "no two consecutive ids in the same millisecond in 1,000 attempts");
    usleep(2000);
    rnd_uuid7(later);
    cr_expect_gt(strcmp(later, first), 0, "%s was made after %s and sorts after it", later, first);
}

enum { THREADS = 4, EACH = 2500 };
static char uuids[THREADS * EACH][37];

static void *make_uuids(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < EACH; i++)
        rnd_uuid4(uuids[t * EACH + i]);
    return NULL;
}

static int compare(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Each thread draws its own blocks of 32 UUIDs: none may repeat within or across threads. */
Test(random, uuids_of_several_threads_never_repeat)
{
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        pthread_create(&threads[t], NULL, make_uuids, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    qsort(uuids, THREADS * EACH, sizeof uuids[0], compare);
    for (int i = 1; i < THREADS * EACH; i++)
        cr_assert_neq(strcmp(uuids[i - 1], uuids[i]), 0, "%s twice", uuids[i]);
}

/* Pieces of odd sizes straddle the block's end: every piece is still fresh. */
Test(random, pieces_across_blocks_differ)
{
    unsigned char previous[RND_MAX_PIECE] = {0}, piece[RND_MAX_PIECE];
    for (int n = 0; n < 200; n++) {
        size_t size = (size_t)(n % 7) * 9 + 10; /* 10..64 */
        cr_assert(rnd_bytes(piece, size));
        cr_assert(memcmp(piece, previous, size) != 0, "a piece of %zu bytes repeated", size);
        static const unsigned char zeros[RND_MAX_PIECE] = {0};
        cr_assert(memcmp(piece, zeros, size) != 0, "a wiped piece handed out");
        memcpy(previous, piece, size);
    }
}

/* After fork, parent and child draw from the same point of the parent's block unless the child drops it. */
Test(random, a_forked_child_never_repeats_the_parents_bytes)
{
    unsigned char first[16], parent[16], child[16];
    cr_assert(rnd_bytes(first, sizeof first)); /* the block is filled and partly left */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        bool ok = rnd_bytes(child, sizeof child);
        ssize_t n = ok ? write(fds[1], child, sizeof child) : -1;
        _exit(n == (ssize_t)sizeof child ? 0 : 1);
    }
    cr_assert(rnd_bytes(parent, sizeof parent));
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    close(fds[0]);
    close(fds[1]);
    cr_assert(memcmp(parent, child, sizeof child) != 0, "parent and child drew the same bytes");
}

Test(random, a_draw_larger_than_a_piece_is_refused)
{
    unsigned char big[RND_MAX_PIECE + 1];
    memset(big, 7, sizeof big);
    cr_assert_not(rnd_bytes(big, sizeof big));
    cr_assert_eq(big[0], 7, "untouched");
}

Test(hex, bytes_encode_as_lower_case_digits)
{
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
    char out[11];
    hex_encode(bytes, sizeof bytes, out);
    cr_assert_str_eq(out, "000fa5ff10");
    unsigned char back[5];
    cr_assert(hex_decode(out, back, sizeof back));
    cr_assert_eq(memcmp(back, bytes, sizeof bytes), 0);
}
