/* Shared fixture and helpers for the cmocka suites.  Include after
 * <stdarg.h>, <stddef.h>, <setjmp.h> (cmocka's prerequisites). */
#ifndef BINV_TESTS_COMMON_H
#define BINV_TESTS_COMMON_H

#include <stdint.h>

#include "binv/binv.h"
#include "harness.h" /* device set-up and host helpers (hx_*) */

/* One OpenCL device, context and in-order queue per test binary (group
 * fixture), plus library contexts: the default (invariant) one, an adaptive
 * one, and invariant ones with each GEMM path forced.  Created once per binary
 * so that PoCL compiles each program once. */
typedef struct test_env {
    hx_device dev;              /* owns the context and queue below */
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

/* SHA-256 of bytes as 64 hex digits: the library's own (src/sha256.c), which
 * the tests reach because they link the static library; the harness has none. */
void test_sha256_hex(const void *data, size_t n, char hex[65]);
/* Golden hashes: looks `name` up in tests/golden/<file>; returns 1 on match.
 * With BINV_GOLDEN_UPDATE=1 the file is rewritten with the actual hash. */
int test_golden_check(const char *file, const char *name, const char *hex);

#endif
