/* Shared fixture and helpers for the cmocka suites.  Include after
 * <stdarg.h>, <stddef.h>, <setjmp.h> (cmocka's prerequisites). */
#ifndef BINV_TESTS_COMMON_H
#define BINV_TESTS_COMMON_H

#include <stdint.h>

#include "binv/binv.h"
#include "cli.h"

/* One OpenCL device, context and in-order queue per test binary (group
 * fixture), plus library contexts: the default (invariant) one, an adaptive
 * one, and invariant ones with each GEMM path forced.  Created once per binary
 * so that PoCL compiles each program once. */
typedef struct test_env {
    cli_device dev;             /* owns the context and queue below */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char device_name[256];
    binv_context *ctx;          /* invariant, automatic path choice */
    binv_context *adaptive;     /* BINV_SCHEDULE_ADAPTIVE */
    binv_context *forced[5];    /* invariant, BINV_GEMM_PATH = skinny, splitk, tiled, stream;
                                   [4]: automatic path, BINV_GEMM_FUSE=0 (split-K in 2 launches) */
    binv_context *rows_forced[2]; /* invariant, BINV_ROWS_PATH = fused, split */
    binv_context *attn_forced[2]; /* invariant, BINV_ATTN_PATH = fused, split */
} test_env;

/* Device choice: BINV_TEST_DEVICE = "gpu", "cpu" or "P:D" (platform:device
 * index); default the first device of the first platform that has one.  No
 * device at all fails the group setup loudly: it is never a silent pass. */
int test_env_setup(void **state);
int test_env_teardown(void **state);
/* A context whose knobs (BINV_* names, src/tuning.h) are the environment's
 * with the n (name, value) pairs of `knobs` applied, through the library's
 * testing hook binv_context_create_tuned: tests never set the process
 * environment.  NULL (and a message) on failure. */
binv_context *test_ctx_tuned(const test_env *env, binv_schedule sched, binv_path path, size_t n,
                             const char *const knobs[][2]);

/* Buffers (asserting on failure).  init may be NULL. */
cl_mem test_buffer(const test_env *env, size_t bytes, const void *init);
void test_write(const test_env *env, cl_mem buf, size_t bytes, const void *src);
void test_read(const test_env *env, cl_mem buf, size_t bytes, void *dst);

/* Deterministic data, identical on every platform (integer arithmetic only). */
uint64_t test_rng_next(uint64_t *state);               /* splitmix64 */
/* Values of wide dynamic range (2^-8 .. 2^8, random sign, full mantissa),
 * so that any change of rounding order shows in the bits.  Returns raw
 * storage words of `dtype` in out (4 or 2 bytes each). */
void test_fill(binv_dtype dtype, void *out, size_t count, uint64_t seed);
/* Small signed powers of two (and 0): every sum of products is exact. */
void test_fill_pow2(binv_dtype dtype, void *out, size_t count, uint64_t seed);
float test_to_f32(binv_dtype dtype, const void *data, size_t index);
size_t test_dtype_size(binv_dtype dtype);
const char *test_dtype_name(binv_dtype dtype);
/* Host-side f32 -> storage (round to nearest even), for C initial values. */
void test_from_f32(binv_dtype dtype, float v, void *data, size_t index);

/* SHA-256 of bytes as 64 hex digits. */
void test_sha256_hex(const void *data, size_t n, char hex[65]);
/* Golden hashes: looks `name` up in tests/golden/<file>; returns 1 on match.
 * With BINV_GOLDEN_UPDATE=1 the file is rewritten with the actual hash. */
int test_golden_check(const char *file, const char *name, const char *hex);

#endif
