/* Argument validation as an attacker or a careless caller meets it: sizes
 * whose products wrap, torn option structs, library-owned and read-only
 * buffers as outputs, sub-buffers and host-pointer buffers sharing storage,
 * empty views, objects of another cl_context.  (Outputs after a failed
 * multi-kernel call and the bounds of the caches: test_reliability_faults.c.)
 *
 * Each test is a regression test of issue 15: it fails on the code before
 * the fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"
#include "reliability.h"

/* ---- helpers ---------------------------------------------------------------- */

static cl_mem flags_buffer(const test_env *env, cl_mem_flags flags, size_t bytes) {
    cl_int err;
    cl_mem b = clCreateBuffer(env->context, flags, bytes, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    return b;
}

/* The sub-buffer [origin, origin + size) of parent (origin aligned for the
 * device by the caller, see align_bytes). */
static cl_mem sub(cl_mem parent, cl_mem_flags flags, size_t origin, size_t size) {
    cl_buffer_region r = {origin, size};
    cl_int err;
    cl_mem s = clCreateSubBuffer(parent, flags, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    assert_int_equal(err, CL_SUCCESS);
    return s;
}

/* Sub-buffer origins must be multiples of CL_DEVICE_MEM_BASE_ADDR_ALIGN. */
static size_t align_bytes(const test_env *env) {
    cl_uint bits = 0;
    assert_int_equal(clGetDeviceInfo(env->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits,
                                     &bits, NULL),
                     CL_SUCCESS);
    return bits / 8 ? bits / 8 : 1;
}

/* ---- 1: products that wrap ---------------------------------------------------- */

/* A cache of 2^60 + 64 pages: num_pages * BINV_KV_PAGE_SIZE wraps to 64
 * pages' worth, which a 16 KiB pool holds.  Before the fix the check passed
 * and the kernels indexed a pool of 2^60 pages. */
static void test_cache_extent_overflow(void **state) {
    test_env *env = *state;
    if (SIZE_MAX >> 62 == 0) skip(); /* needs a 64-bit size_t */
    binv_context *c = env->ctx;
    const size_t pages = 64, kvh = 1, D = 4, pool = pages * BINV_KV_PAGE_SIZE * kvh * D * 4;
    cl_mem k = test_buffer(env, pool, NULL), v = test_buffer(env, pool, NULL);
    cl_mem kn = test_buffer(env, D * 4, NULL), vn = test_buffer(env, D * 4, NULL);
    cl_mem q = test_buffer(env, D * 4, NULL), o = test_buffer(env, D * 4, NULL);
    const cl_uint ql[1] = {1}, cl[1] = {1}, pt[1] = {0};
    binv_kv_batch *b = NULL;
    assert_int_equal(binv_kv_batch_create(c, env->queue, pages, 1, ql, cl, pt, 1, &b),
                     BINV_SUCCESS);
    binv_kv_cache cache = {BINV_DTYPE_F32, ((size_t)1 << 60) + pages, kvh, D, k, v};
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, kn, 0, D, vn, 0, D, 0, NULL, NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    assert_non_null(strstr(binv_context_last_error(c), "overflows"));
    assert_int_equal(binv_attention(c, env->queue, &cache, b, 1, 0.5f, q, 0, D, o, 0, D, 0, NULL,
                                    NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    /* kv_heads and head_dim products wrap the same way. */
    cache.num_pages = ((size_t)1 << 58) + pages / 4;
    cache.kv_heads = 4;
    cache.head_dim = 1;
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, kn, 0, 4, vn, 0, 4, 0, NULL, NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    /* The honest size works. */
    binv_kv_cache ok = {BINV_DTYPE_F32, pages, kvh, D, k, v};
    assert_int_equal(binv_kv_append(c, env->queue, &ok, b, kn, 0, D, vn, 0, D, 0, NULL, NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    binv_kv_batch_destroy(b);
    cl_mem all[] = {k, v, kn, vn, q, o};
    for (size_t i = 0; i < 6; i++) clReleaseMemObject(all[i]);
}

/* Huge sizes in every validator: a distinct status, never a wrap. */
static void test_huge_sizes(void **state) {
    test_env *env = *state;
    assert_string_equal(binv_status_string(BINV_ERROR_ACCESS_FLAGS),
                        "buffer access flags forbid the access");
    binv_context *c = env->ctx;
    cl_mem x = test_buffer(env, 4096, NULL), y = test_buffer(env, 4096, NULL);
    const size_t big = SIZE_MAX / 2 + 2;
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 2, 2, 2,
                               1.0f, x, 0, big, y, 0, 2, 0.0f, y, 512, 2, 0, NULL, NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 3, 4, x, 0, big, y, 0, 4, 0, NULL,
                                  NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 3, 4, x, 0, 4, x, 0, big, y, 0, 4,
                                 0, NULL, NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 3, 1, 2, x, 0, big, y, 0, 10000.0f,
                               0, NULL, NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_row_sum(c, env->queue, BINV_DTYPE_F32, 2, 4, x, big, 4, y, 0, 0, NULL,
                                  NULL),
                     BINV_ERROR_INVALID_DIMENSION);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

/* ---- 4: options cut inside a field -------------------------------------------- */

static void test_options_torn_field(void **state) {
    test_env *env = *state;
    binv_context *c = NULL;
    /* struct_size ends 4 bytes into cache_dir: the field is absent (before
     * the fix half of the pointer was copied and dereferenced). */
    binv_options o = {offsetof(binv_options, cache_dir) + 4, BINV_SCHEDULE_ADAPTIVE,
                      "/nonexistent/h3-must-not-be-used", BINV_PATH_PORTABLE};
    assert_int_equal(binv_context_create(env->context, env->device, &o, &c), BINV_SUCCESS);
    assert_null(c->cache_dir);
    assert_int_equal(c->schedule, BINV_SCHEDULE_ADAPTIVE); /* wholly inside: taken */
    binv_context_destroy(c);
    /* Cut inside path (an invalid value in its first bytes is not read). */
    binv_options p;
    memset(&p, 0xff, sizeof p);
    p.struct_size = offsetof(binv_options, path) + 1;
    p.schedule = BINV_SCHEDULE_INVARIANT;
    p.cache_dir = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, &p, &c), BINV_SUCCESS);
    assert_int_equal(binv_context_path(c), BINV_PATH_PORTABLE);
    binv_context_destroy(c);
    /* Every size from sizeof(size_t) up: never a crash, fields whole or
     * absent. */
    for (size_t n = sizeof(size_t); n <= sizeof(binv_options) + 8; n++) {
        unsigned char raw[sizeof(binv_options) + 8];
        memset(raw, 0, sizeof raw);
        binv_options full = {n, BINV_SCHEDULE_INVARIANT, "/nonexistent/h3", BINV_PATH_PORTABLE};
        memcpy(raw, &full, sizeof full);
        memset(raw + (n < sizeof full ? n : sizeof full), 0xa5,
               sizeof raw - (n < sizeof full ? n : sizeof full));
        c = NULL;
        assert_int_equal(binv_context_create(env->context, env->device, (binv_options *)raw, &c),
                         BINV_SUCCESS);
        if (n < offsetof(binv_options, cache_dir) + sizeof(char *)) assert_null(c->cache_dir);
        else assert_string_equal(c->cache_dir, "/nonexistent/h3");
        binv_context_destroy(c);
    }
}

/* ---- 5: library-owned and read-only buffers as outputs ------------------------ */

static void test_output_batch_metadata(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    const size_t D = 4;
    /* o = the batch's own metadata (1 token x 1 head x D: fits the buffer). */
    const cl_uint ql[1] = {1}, cl[1] = {1}, pt[4] = {0, 0, 0, 0};
    binv_kv_batch *b = NULL;
    assert_int_equal(binv_kv_batch_create(c, env->queue, 2, 1, ql, cl, pt, 4, &b), BINV_SUCCESS);
    const size_t pool = 2 * BINV_KV_PAGE_SIZE * D * 4;
    cl_mem k = test_buffer(env, pool, NULL), v = test_buffer(env, pool, NULL);
    cl_mem q = test_buffer(env, D * 4, NULL);
    binv_kv_cache cache = {BINV_DTYPE_F32, 2, 1, D, k, v};
    cl_mem meta = binv_kv_batch_positions(b);
    size_t msize = 0;
    clGetMemObjectInfo(meta, CL_MEM_SIZE, sizeof msize, &msize, NULL);
    assert_true(msize >= D * 4);
    binv_status st = binv_attention(c, env->queue, &cache, b, 1, 0.5f, q, 0, D, meta, 0, D, 0,
                                    NULL, NULL);
    assert_true(st == BINV_ERROR_ACCESS_FLAGS || st == BINV_ERROR_ALIASING);
    /* positions as rope's x (written) */
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 1, 1, 2, meta, 0, 2, q, 0, 10000.0f,
                               0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    /* the batch still works: nothing overwrote its page table */
    cl_mem o = test_buffer(env, D * 4, NULL);
    assert_int_equal(binv_attention(c, env->queue, &cache, b, 1, 0.5f, q, 0, D, o, 0, D, 0, NULL,
                                    NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    binv_kv_batch_destroy(b);
    cl_mem all[] = {k, v, q, o};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

static void test_read_only_outputs(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    const size_t D = 4, pool = 2 * BINV_KV_PAGE_SIZE * D * 4;
    const cl_uint ql[1] = {1}, cl[1] = {1}, pt[4] = {0, 0, 0, 0};
    binv_kv_batch *b = NULL;
    assert_int_equal(binv_kv_batch_create(c, env->queue, 2, 1, ql, cl, pt, 4, &b), BINV_SUCCESS);
    cl_mem v = test_buffer(env, pool, NULL);
    /* Read-only outputs, write-only inputs. */
    cl_mem ro = flags_buffer(env, CL_MEM_READ_ONLY, 4096);
    cl_mem wo = flags_buffer(env, CL_MEM_WRITE_ONLY, 4096);
    cl_mem rw = test_buffer(env, 4096, NULL), rw2 = test_buffer(env, 4096, NULL);
    fill_bytes(env, rw, 4096, 0);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 4, 4,
                               1.0f, rw, 0, 4, rw, 16, 4, 0.0f, ro, 0, 4, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_non_null(strstr(binv_context_last_error(c), "READ_ONLY"));
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 4, 4,
                               1.0f, wo, 0, 4, rw, 0, 4, 0.0f, rw2, 0, 4, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    /* beta == 0: C is not read, so a write-only C is fine; beta != 0 reads it. */
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 4, 4,
                               1.0f, rw, 0, 4, rw, 16, 4, 0.0f, wo, 0, 4, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 4, 4,
                               1.0f, rw, 0, 4, rw, 16, 4, 1.0f, wo, 0, 4, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_int_equal(binv_rmsnorm(c, env->queue, BINV_DTYPE_F32, 2, 4, rw, 0, 4, rw, 64, 1e-5f, ro,
                                  0, 4, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 2, 4, wo, 0, 4, rw, 0, 4, 0, NULL,
                                  NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_int_equal(binv_row_sum(c, env->queue, BINV_DTYPE_F32, 2, 4, rw, 0, 4, ro, 0, 0, NULL,
                                  NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_int_equal(binv_add_rmsnorm(c, env->queue, BINV_DTYPE_F32, 2, 4, ro, 0, 4, rw, 0, 4, rw,
                                      64, 1e-5f, rw2, 0, 4, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS); /* x receives x + residual */
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 2, 4, rw, 0, 4, rw, 64, 4, ro, 0, 4,
                                 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 1, 1, 2, ro, 0, 2, rw, 0, 10000.0f, 0,
                               NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    /* A read-only cache for kv_append (written), fine for attention (read). */
    cl_mem rok = flags_buffer(env, CL_MEM_READ_ONLY, pool);
    binv_kv_cache rocache = {BINV_DTYPE_F32, 2, 1, D, rok, v};
    assert_int_equal(binv_kv_append(c, env->queue, &rocache, b, rw, 0, D, rw, 64, D, 0, NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    /* A sub-buffer with flags 0 of a read-only parent inherits read-only. */
    cl_mem rosub = sub(ro, 0, 0, 256);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 2, 4, rw, 0, 4, rosub, 0, 4, 0,
                                  NULL, NULL),
                     BINV_ERROR_ACCESS_FLAGS);
    /* Untouched: nothing was written to the read-write buffer used as input. */
    assert_true(all_bytes(env, rw, 4096, 0));
    clFinish(env->queue);
    binv_kv_batch_destroy(b);
    cl_mem all[] = {v, ro, wo, rw, rw2, rok, rosub};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* ---- 6: storage shared through sub-buffers and host pointers ------------------ */

static void test_subbuffer_aliasing(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    const size_t al = align_bytes(env), n = 32, abytes = n * n * 4;
    if (al >= abytes) skip(); /* sub-buffers cannot start inside A */
    const size_t boff = (2 * abytes + al - 1) / al * al, bytes = boff + abytes + al;
    cl_mem whole = test_buffer(env, bytes, NULL);
    fill_bytes(env, whole, bytes, 0x3c);
    /* A = the first n x n of whole; C = a sub-buffer starting inside A. */
    cl_mem A = sub(whole, 0, 0, abytes);
    cl_mem B = sub(whole, 0, boff, abytes);
    cl_mem C = sub(whole, 0, al, abytes);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, n, n, n,
                               1.0f, A, 0, n, B, 0, n, 0.0f, C, 0, n, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, n, n, n,
                               1.0f, B, 0, n, A, 0, n, 0.0f, C, 0, n, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    /* C as the root buffer over B's bytes (offset in elements). */
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, n, n, n,
                               1.0f, A, 0, n, B, 0, n, 0.0f, whole, boff / 4 + 3, n, 0,
                               NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_true(all_bytes(env, whole, bytes, 0x3c)); /* nothing written */

    /* softmax: y shifted into x through a sub-buffer; y the same bytes as x
     * through another handle is in place (allowed). */
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 8, 128, A, 0, 128, C, 0, 128, 0,
                                  NULL, NULL),
                     BINV_ERROR_ALIASING);
    cl_mem A2 = sub(whole, 0, 0, abytes);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 8, 128, A, 0, 128, A2, 0, 128, 0,
                                  NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_log_softmax(c, env->queue, BINV_DTYPE_F32, 8, 128, A, 0, 128, whole, 0,
                                      128, 0, NULL, NULL),
                     BINV_SUCCESS);
    /* swiglu: y shifted into gate, and into up. */
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 8, 128, A, 0, 128, B, 0, 128, C, 0,
                                 128, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 8, 128, B, 0, 128, A, 0, 128, C, 0,
                                 128, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    /* rows: y over the weight through the root buffer. */
    assert_int_equal(binv_rmsnorm(c, env->queue, BINV_DTYPE_F32, 2, 16, B, 0, 16, A, 4, 1e-5f,
                                  whole, 0, 16, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    clFinish(env->queue);

    clReleaseMemObject(A);
    clReleaseMemObject(A2);
    clReleaseMemObject(B);
    clReleaseMemObject(C);
    clReleaseMemObject(whole);
}

/* KV pools overlapping, k_new over a pool, o over a pool (sub-buffers and the
 * root buffer). */
static void test_subbuffer_aliasing_kv(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    const size_t al = align_bytes(env);
    const size_t D = 4, pages = 2, pool = pages * BINV_KV_PAGE_SIZE * D * 4; /* 512 bytes */
    const size_t kvb = 8 * al + 4 * pool;
    cl_mem kv = test_buffer(env, kvb, NULL);
    fill_bytes(env, kv, kvb, 0);
    cl_mem K = sub(kv, 0, 0, pool);
    const size_t voff = (pool / 2 + al - 1) / al * al;
    cl_mem Vbad = sub(kv, 0, voff < pool ? voff : 0, pool);
    const size_t vgood_off = (pool + al - 1) / al * al;
    cl_mem V = sub(kv, 0, vgood_off, pool);
    const cl_uint ql[1] = {2}, cl[1] = {2}, pt[2] = {1, 0};
    binv_kv_batch *b = NULL;
    assert_int_equal(binv_kv_batch_create(c, env->queue, pages, 1, ql, cl, pt, 2, &b),
                     BINV_SUCCESS);
    cl_mem kn = test_buffer(env, 2 * D * 4, NULL), vn = test_buffer(env, 2 * D * 4, NULL);
    cl_mem q = test_buffer(env, 2 * D * 4, NULL), o = test_buffer(env, 2 * D * 4, NULL);
    if (voff < pool) {
        binv_kv_cache bad = {BINV_DTYPE_F32, pages, 1, D, K, Vbad};
        assert_int_equal(binv_kv_append(c, env->queue, &bad, b, kn, 0, D, vn, 0, D, 0, NULL, NULL),
                         BINV_ERROR_ALIASING);
        assert_int_equal(binv_attention(c, env->queue, &bad, b, 1, 0.5f, q, 0, D, o, 0, D, 0, NULL,
                                        NULL),
                         BINV_ERROR_ALIASING);
    }
    binv_kv_cache cache = {BINV_DTYPE_F32, pages, 1, D, K, V};
    /* k_new: the root buffer at the pool's slots */
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, kv, 4, D, vn, 0, D, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, kn, 0, D, kv, vgood_off / 4, D, 0,
                                    NULL, NULL),
                     BINV_ERROR_ALIASING);
    /* o: over the V pool through the root */
    assert_int_equal(binv_attention(c, env->queue, &cache, b, 1, 0.5f, q, 0, D, kv,
                                    vgood_off / 4 + 8, D, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_true(all_bytes(env, kv, kvb, 0));
    /* The honest layout works. */
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, kn, 0, D, vn, 0, D, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_attention(c, env->queue, &cache, b, 1, 0.5f, q, 0, D, o, 0, D, 0, NULL,
                                    NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    binv_kv_batch_destroy(b);

    cl_mem all[] = {K, Vbad, V, kv, kn, vn, q, o};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
}

/* Two CL_MEM_USE_HOST_PTR buffers over one host array share storage. */
static void test_host_ptr_aliasing(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_mem B = test_buffer(env, 8 * 8 * 4, NULL);
    fill_bytes(env, B, 8 * 8 * 4, 0x3c);
    float *host = aligned_alloc(4096, 4096);
    memset(host, 0, 4096);
    cl_int err;
    cl_mem h1 = clCreateBuffer(env->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, 4096, host,
                               &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem h2 = clCreateBuffer(env->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, 2048,
                               host + 256, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 8, 8, 8,
                               1.0f, h1, 256, 8, B, 0, 8, 0.0f, h2, 0, 8, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 8, 8, 8,
                               1.0f, h1, 0, 8, B, 0, 8, 0.0f, h2, 0, 8, 0, NULL, NULL),
                     BINV_SUCCESS); /* h1's first 64 floats end before h2's bytes */
    clFinish(env->queue);
    clReleaseMemObject(h1);
    clReleaseMemObject(h2);
    free(host);
    clReleaseMemObject(B);
}

/* Interleaved views of one stride share no element: still accepted. */
static void test_interleaved_views(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_mem gu = test_buffer(env, 4 * 32 * 4, NULL);
    fill_bytes(env, gu, 4 * 32 * 4, 0);
    /* [gate | up] rows of 32: y = gate (in place), up the other half. */
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 4, 16, gu, 0, 32, gu, 16, 32, gu, 0,
                                 32, 0, NULL, NULL),
                     BINV_SUCCESS);
    /* y in the second half of gate's rows, up elsewhere: no shared element. */
    cl_mem y = test_buffer(env, 4 * 32 * 4, NULL);
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 4, 16, gu, 0, 32, y, 0, 16, gu, 16,
                                 32, 0, NULL, NULL),
                     BINV_SUCCESS);
    /* ... but shifted by one element it meets gate's rows. */
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 4, 16, gu, 0, 32, y, 0, 16, gu, 15,
                                 32, 0, NULL, NULL),
                     BINV_ERROR_ALIASING);
    clFinish(env->queue);
    clReleaseMemObject(gu);
    clReleaseMemObject(y);
}

/* ---- 7: empty views overlap nothing ------------------------------------------ */

static void test_empty_views(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_mem x = test_buffer(env, 4096, NULL);
    /* rows == 0 with y inside the weight vector: a no-op. */
    assert_int_equal(binv_rmsnorm(c, env->queue, BINV_DTYPE_F32, 0, 16, x, 0, 16, x, 0, 1e-5f, x, 4,
                                  16, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_layernorm(c, env->queue, BINV_DTYPE_F32, 0, 16, x, 100, 16, x, 0, x, 32,
                                    1e-5f, x, 40, 16, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_add_rmsnorm(c, env->queue, BINV_DTYPE_F32, 0, 16, x, 0, 16, x, 2, 16, x,
                                      4, 1e-5f, x, 6, 16, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_swiglu(c, env->queue, BINV_DTYPE_F32, 0, 16, x, 0, 16, x, 2, 16, x, 1, 16,
                                 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_row_sum(c, env->queue, BINV_DTYPE_F32, 0, 16, x, 0, 16, x, 3, 0, NULL,
                                  NULL),
                     BINV_SUCCESS);
    /* m == 0 GEMM with C inside A */
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 0, 4, 4,
                               1.0f, x, 0, 4, x, 64, 4, 0.0f, x, 2, 4, 0, NULL, NULL),
                     BINV_SUCCESS);
    /* no new tokens: k_new and o may be anything valid, even a pool */
    const size_t D = 4, pool = 2 * BINV_KV_PAGE_SIZE * D * 4;
    cl_mem k = test_buffer(env, pool, NULL), v = test_buffer(env, pool, NULL);
    binv_kv_batch *b = NULL;
    const cl_uint dummy = 0;
    assert_int_equal(binv_kv_batch_create(c, env->queue, 2, 0, &dummy, &dummy, &dummy, 1, &b),
                     BINV_SUCCESS);
    assert_int_equal(binv_kv_batch_tokens(b), 0);
    binv_kv_cache cache = {BINV_DTYPE_F32, 2, 1, D, k, v};
    assert_int_equal(binv_kv_append(c, env->queue, &cache, b, k, 0, D, v, 0, D, 0, NULL, NULL),
                     BINV_SUCCESS);
    assert_int_equal(binv_attention(c, env->queue, &cache, b, 1, 0.5f, x, 0, D, k, 0, D, 0, NULL,
                                    NULL),
                     BINV_SUCCESS);
    /* tokens == 0 rope with positions = x */
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 0, 1, 2, x, 0, 2, x, 0, 10000.0f, 0,
                               NULL, NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    binv_kv_batch_destroy(b);
    clReleaseMemObject(x);
    clReleaseMemObject(k);
    clReleaseMemObject(v);
}

/* ---- 8: objects of another cl_context ---------------------------------------- */

static void test_foreign_objects(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_int err;
    cl_context other = clCreateContext(NULL, 1, &env->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem fa = clCreateBuffer(other, CL_MEM_READ_WRITE, 4096, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem mine = test_buffer(env, 4096, NULL);
    /* zero dimensions: A and B are not read but must still be ours */
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 4, 0,
                               1.0f, fa, 0, 4, mine, 0, 4, 0.0f, mine, 512, 4, 0, NULL, NULL),
                     BINV_ERROR_CONTEXT_MISMATCH);
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 0, 4, 4,
                               1.0f, mine, 0, 4, fa, 0, 4, 0.0f, mine, 512, 4, 0, NULL, NULL),
                     BINV_ERROR_CONTEXT_MISMATCH);
    /* wait-list events of another context */
    cl_event fe = clCreateUserEvent(other, &err);
    assert_int_equal(err, CL_SUCCESS);
    clSetUserEventStatus(fe, CL_COMPLETE);
    fill_bytes(env, mine, 4096, 0);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 2, 4, mine, 0, 4, mine, 256, 4, 1,
                                  &fe, NULL),
                     BINV_ERROR_CONTEXT_MISMATCH);
    assert_non_null(strstr(binv_context_last_error(c), "wait_list[0]"));
    assert_int_equal(binv_gemm(c, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 0, 4, 4,
                               1.0f, mine, 0, 4, mine, 0, 4, 0.0f, mine, 512, 4, 1, &fe, NULL),
                     BINV_ERROR_CONTEXT_MISMATCH);
    assert_true(all_bytes(env, mine, 4096, 0));
    /* an event of ours is fine */
    cl_event me = clCreateUserEvent(env->context, &err);
    assert_int_equal(err, CL_SUCCESS);
    clSetUserEventStatus(me, CL_COMPLETE);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 2, 4, mine, 0, 4, mine, 256, 4, 1,
                                  &me, NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    clReleaseEvent(me);
    clReleaseEvent(fe);
    clReleaseMemObject(fa);
    clReleaseMemObject(mine);
    clReleaseContext(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_extent_overflow),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_options_torn_field),
        cmocka_unit_test(test_output_batch_metadata),
        cmocka_unit_test(test_read_only_outputs),
        cmocka_unit_test(test_subbuffer_aliasing),
        cmocka_unit_test(test_subbuffer_aliasing_kv),
        cmocka_unit_test(test_host_ptr_aliasing),
        cmocka_unit_test(test_interleaved_views),
        cmocka_unit_test(test_empty_views),
        cmocka_unit_test(test_foreign_objects),
    };
    return cmocka_run_group_tests(tests, test_env_setup, test_env_teardown);
}
