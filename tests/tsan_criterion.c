/*
 * tests/tsan_criterion.c — linked into the test binaries of the ThreadSanitizer
 * build only (CMakeLists.txt, FHIRGW_TSAN): lets Criterion start under TSan.
 *
 * Criterion's sandbox (BoxFort, inside libcriterion) maps its shared arena with
 * MAP_FIXED at a random address between 0x2000'0000'0000 and 0x7f00'0000'0000,
 * picked with rand_r(). Most of that range is TSan's shadow and meta memory,
 * where TSan refuses fixed mappings, so every run stops at once with "Could not
 * initialize inheritable arena" (Criterion issue 274, open since 2018).
 *
 * rand_r() is used by nothing else in these tests (nor by OpenSSL, libevent,
 * SQLite or libcurl), so this definition, which the dynamic linker prefers to
 * libc's, hands BoxFort offsets that put the arena in TSan's application range
 * 0x5500'0000'0000-0x5680'0000'0000 (PIE binaries; the same range in gcc 12's
 * and clang 14's TSan on x86_64): 384 slots 4 GiB apart, so a slot in use (BoxFort
 * probes with msync first) is skipped for the next.
 */
#include <stdatomic.h>
#include <stdlib.h>

#define ARENA_SLOT_FIRST 0x350000u /* 0x2000'0000'0000 + n x 16 MiB = 0x5500'0000'0000 */
#define ARENA_SLOT_STEP 0x100u     /* x 16 MiB = 4 GiB */
#define ARENA_SLOTS 384u           /* up to 0x5680'0000'0000 */

int rand_r(unsigned *seed)
{
    static atomic_uint next;
    (void)seed;
    return (int)(ARENA_SLOT_FIRST + atomic_fetch_add(&next, 1) % ARENA_SLOTS * ARENA_SLOT_STEP);
}
