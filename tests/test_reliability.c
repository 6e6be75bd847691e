/* Argument validation as an attacker or a careless caller meets it: sizes
 * whose products wrap, torn option structs, library-owned and read-only
 * buffers as outputs, sub-buffers and host-pointer buffers sharing storage,
 * empty views, objects of another cl_context, outputs after a failed
 * multi-kernel call, and the bounds of a long-lived context's caches.
 *
 * Each test is a regression test of issue 15: it fails on the code before
 * the fix.  OpenCL calls are interposed (clSetKernelArg,
 * clEnqueueNDRangeKernel: this executable's definitions win over
 * libOpenCL's for the statically linked library) to fail one chosen call. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

/* ---- fault injection: fail the n-th call after arming --------------------- */

static int fail_setarg_at = 0, setarg_calls = 0; /* 0: off */
static int fail_enqueue_at = 0, enqueue_calls = 0;

CL_API_ENTRY cl_int CL_API_CALL clSetKernelArg(cl_kernel k, cl_uint i, size_t size,
                                               const void *value) {
    static cl_int(CL_API_CALL * real)(cl_kernel, cl_uint, size_t, const void *) = NULL;
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "clSetKernelArg");
    if (fail_setarg_at && ++setarg_calls == fail_setarg_at) return CL_OUT_OF_RESOURCES;
    return real(k, i, size, value);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                                       cl_uint dims, const size_t *off,
                                                       const size_t *gws, const size_t *lws,
                                                       cl_uint nw, const cl_event *w,
                                                       cl_event *ev) {
    static cl_int(CL_API_CALL * real)(cl_command_queue, cl_kernel, cl_uint, const size_t *,
                                      const size_t *, const size_t *, cl_uint, const cl_event *,
                                      cl_event *) = NULL;
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
    if (fail_enqueue_at && ++enqueue_calls == fail_enqueue_at) return CL_OUT_OF_RESOURCES;
    return real(q, k, dims, off, gws, lws, nw, w, ev);
}

static int fail_create_at = 0, create_calls = 0;

CL_API_ENTRY cl_mem CL_API_CALL clCreateBuffer(cl_context c, cl_mem_flags flags, size_t size,
                                               void *host, cl_int *err) {
    static cl_mem(CL_API_CALL * real)(cl_context, cl_mem_flags, size_t, void *, cl_int *) = NULL;
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "clCreateBuffer");
    if (fail_create_at && ++create_calls == fail_create_at) {
        if (err) *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    return real(c, flags, size, host, err);
}

static void faults_off(void) {
    fail_setarg_at = setarg_calls = fail_enqueue_at = enqueue_calls = 0;
    fail_create_at = create_calls = 0;
}

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

static void fill_bytes(const test_env *env, cl_mem b, size_t bytes, unsigned char v) {
    unsigned char *h = malloc(bytes);
    memset(h, v, bytes);
    test_write(env, b, bytes, h);
    free(h);
}

/* Every byte of b is v. */
static int all_bytes(const test_env *env, cl_mem b, size_t bytes, unsigned char v) {
    unsigned char *h = malloc(bytes);
    test_read(env, b, bytes, h);
    int ok = 1;
    for (size_t i = 0; i < bytes; i++) ok &= h[i] == v;
    free(h);
    return ok;
}

static binv_context *new_ctx(const test_env *env) {
    binv_context *c = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, NULL, &c), BINV_SUCCESS);
    return c;
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

    /* KV: pools overlapping, k_new over a pool, o over a pool. */
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

    /* Two CL_MEM_USE_HOST_PTR buffers over one host array share storage. */
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
    cl_mem all[] = {A, A2, B, C, whole, K, Vbad, V, kv, kn, vn, q, o};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
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

/* ---- 9: o all or nothing in split-KV attention ------------------------------- */

typedef struct attn_case {
    cl_mem k, v, q, o;
    binv_kv_batch *b;
    binv_kv_cache cache;
    size_t T, H, D, obytes;
} attn_case;

/* Sequence 0: one decode token at position 299 (two key splits: merged by
 * attn_merge); sequence 1: two tokens at positions 0 and 1 (one split each:
 * written by attn_chunks). */
static void attn_case_init(const test_env *env, binv_context *c, attn_case *a) {
    memset(a, 0, sizeof *a);
    a->H = 2;
    a->D = 8;
    const size_t pages = 24, kvd = a->D, pool = pages * BINV_KV_PAGE_SIZE * kvd * 4;
    float *h = malloc(pool);
    uint64_t s = 5;
    for (size_t i = 0; i < pool / 4; i++)
        h[i] = (float)((int)(hx_rng_next(&s) % 2001) - 1000) / 1000.0f;
    a->k = test_buffer(env, pool, h);
    for (size_t i = 0; i < pool / 4; i++)
        h[i] = (float)((int)(hx_rng_next(&s) % 2001) - 1000) / 1000.0f;
    a->v = test_buffer(env, pool, h);
    free(h);
    const cl_uint ql[2] = {1, 2}, cl[2] = {300, 2};
    cl_uint pt[2 * 20];
    for (cl_uint i = 0; i < 40; i++) pt[i] = i < 20 ? i : 20 + (i - 20) % 4;
    assert_int_equal(binv_kv_batch_create(c, env->queue, pages, 2, ql, cl, pt, 20, &a->b),
                     BINV_SUCCESS);
    a->T = 3;
    a->cache = (binv_kv_cache){BINV_DTYPE_F32, pages, 1, a->D, a->k, a->v};
    float qh[3 * 2 * 8];
    for (size_t i = 0; i < 48; i++) qh[i] = (float)((int)(hx_rng_next(&s) % 2001) - 1000) / 500.0f;
    a->q = test_buffer(env, sizeof qh, qh);
    a->obytes = a->T * a->H * a->D * 4;
    a->o = test_buffer(env, a->obytes, NULL);
}

static void attn_case_free(attn_case *a) {
    binv_kv_batch_destroy(a->b);
    clReleaseMemObject(a->k);
    clReleaseMemObject(a->v);
    clReleaseMemObject(a->q);
    clReleaseMemObject(a->o);
}

static binv_status attn_run(const test_env *env, binv_context *c, attn_case *a) {
    binv_status st = binv_attention(c, env->queue, &a->cache, a->b, a->H, 0.35f, a->q, 0,
                                    a->H * a->D, a->o, 0, a->H * a->D, 0, NULL, NULL);
    clFinish(env->queue);
    return st;
}

static void test_attention_all_or_nothing(void **state) {
    test_env *env = *state;
    binv_context *c = env->attn_forced[1]; /* split keys */
    attn_case a;
    attn_case_init(env, c, &a);
    const size_t row = a.H * a.D * 4;
    unsigned char *ref = malloc(a.obytes), *got = malloc(a.obytes);
    fill_bytes(env, a.o, a.obytes, 0x7f);
    assert_int_equal(attn_run(env, c, &a), BINV_SUCCESS);
    test_read(env, a.o, a.obytes, ref);
    for (size_t t = 0; t < a.T; t++) assert_int_not_equal(ref[t * row], 0x7f); /* all written */

    /* A failure while the second kernel is prepared (its first argument):
     * before the fix attn_chunks had already been enqueued and wrote the
     * rows of sequence 1. */
    fill_bytes(env, a.o, a.obytes, 0x7f);
    fail_setarg_at = 19 + 1;
    binv_status st = attn_run(env, c, &a);
    const int calls = setarg_calls;
    faults_off();
    assert_int_equal(st, CL_OUT_OF_RESOURCES);
    assert_true(calls >= 20);
    assert_true(all_bytes(env, a.o, a.obytes, 0x7f));
    /* Every failure point of the preparation leaves o untouched. */
    for (int at = 1; at <= 27; at++) {
        fill_bytes(env, a.o, a.obytes, 0x7f);
        fail_setarg_at = at;
        st = attn_run(env, c, &a);
        faults_off();
        assert_int_equal(st, CL_OUT_OF_RESOURCES);
        assert_true(all_bytes(env, a.o, a.obytes, 0x7f));
    }
    /* The remaining, documented case: the driver fails attn_merge's enqueue
     * itself.  Rows of single-split tokens (sequence 1: tokens 1, 2) hold
     * their final values, the split token's row (token 0) is untouched. */
    fill_bytes(env, a.o, a.obytes, 0x7f);
    fail_enqueue_at = 2;
    st = attn_run(env, c, &a);
    faults_off();
    assert_int_equal(st, CL_OUT_OF_RESOURCES);
    test_read(env, a.o, a.obytes, got);
    for (size_t i = 0; i < row; i++) assert_int_equal(got[i], 0x7f);
    assert_memory_equal(got + row, ref + row, 2 * row);
    /* And the next call recovers with the same bits. */
    assert_int_equal(attn_run(env, c, &a), BINV_SUCCESS);
    test_read(env, a.o, a.obytes, got);
    assert_memory_equal(got, ref, a.obytes);
    free(ref);
    free(got);
    attn_case_free(&a);
}

/* GEMM split-K and split rows: the first kernels write only the workspace,
 * so a failure of the last enqueue leaves the output untouched. */
static void test_multi_kernel_outputs_untouched(void **state) {
    test_env *env = *state;
    const size_t m = 2, n = 64, k = 1024;
    float *ha = malloc(m * k * 4), *hb = malloc(k * n * 4);
    for (size_t i = 0; i < m * k; i++) ha[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < k * n; i++) hb[i] = (float)(i % 5) - 2.0f;
    cl_mem A = test_buffer(env, m * k * 4, ha), B = test_buffer(env, k * n * 4, hb);
    cl_mem C = test_buffer(env, m * n * 4, NULL);
    binv_context *two = env->forced[4]; /* BINV_GEMM_FUSE=0: split-K in two launches */
    binv_context *splitk = env->forced[1];
    binv_context *list[2] = {two, splitk};
    for (int i = 0; i < 2; i++) {
        fill_bytes(env, C, m * n * 4, 0x55);
        fail_enqueue_at = 2;
        binv_status st = binv_gemm(list[i], env->queue, BINV_DTYPE_F32, BINV_NO_TRANS,
                                   BINV_NO_TRANS, m, n, k, 1.0f, A, 0, k, B, 0, n, 0.0f, C, 0, n,
                                   0, NULL, NULL);
        const int calls = enqueue_calls;
        faults_off();
        clFinish(env->queue);
        if (calls < 2) { /* one launch on this device: nothing to split */
            assert_int_equal(st, BINV_SUCCESS);
            continue;
        }
        assert_int_equal(st, CL_OUT_OF_RESOURCES);
        assert_true(all_bytes(env, C, m * n * 4, 0x55));
    }
    /* rows split: rows_partials then rows_apply (layernorm: two partials). */
    binv_context *rs = env->rows_forced[1];
    const size_t rows = 2, cols = 8192;
    float *hx = malloc(rows * cols * 4);
    for (size_t i = 0; i < rows * cols; i++) hx[i] = (float)(i % 11) - 5.0f;
    cl_mem X = test_buffer(env, rows * cols * 4, hx), Y = test_buffer(env, rows * cols * 4, NULL);
    cl_mem W = test_buffer(env, cols * 4, hx);
    for (int last = 2; last <= 3; last++) {
        fill_bytes(env, Y, rows * cols * 4, 0x55);
        fail_enqueue_at = last;
        binv_status st = last == 2 ? binv_softmax(rs, env->queue, BINV_DTYPE_F32, rows, cols, X, 0,
                                                  cols, Y, 0, cols, 0, NULL, NULL)
                                   : binv_layernorm(rs, env->queue, BINV_DTYPE_F32, rows, cols, X,
                                                    0, cols, W, 0, W, 0, 1e-5f, Y, 0, cols, 0,
                                                    NULL, NULL);
        faults_off();
        clFinish(env->queue);
        assert_int_equal(st, CL_OUT_OF_RESOURCES);
        assert_true(all_bytes(env, Y, rows * cols * 4, 0x55));
    }
    free(ha);
    free(hb);
    free(hx);
    cl_mem all[] = {A, B, C, X, Y, W};
    for (size_t i = 0; i < 6; i++) clReleaseMemObject(all[i]);
}

/* ---- 11: bounded caches -------------------------------------------------------- */

static cl_uint queue_refs(cl_command_queue q) {
    cl_uint r = 0;
    assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_REFERENCE_COUNT, sizeof r, &r, NULL),
                     CL_SUCCESS);
    return r;
}

static void test_bounded_workspaces(void **state) {
    test_env *env = *state;
    binv_context *c = new_ctx(env);
    cl_mem x = test_buffer(env, 8 * 4, NULL), y = test_buffer(env, 8 * 4, NULL);
    fill_bytes(env, x, 32, 0);
    cl_int err;
    /* Warm up (program, kernel) on the fixture's queue. */
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL,
                                  NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    const size_t base = binv_context_retained_objects(c);
    cl_command_queue first = clCreateCommandQueue(env->context, env->device, 0, &err);
    assert_int_equal(err, CL_SUCCESS);
    const cl_uint fresh = queue_refs(first);
    assert_int_equal(binv_softmax(c, first, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL, NULL),
                     BINV_SUCCESS);
    clFinish(first);
    assert_true(queue_refs(first) > fresh); /* the library retains it */
    size_t peak = 0;
    for (int i = 0; i < 300; i++) {
        cl_command_queue q = clCreateCommandQueue(env->context, env->device, 0, &err);
        assert_int_equal(err, CL_SUCCESS);
        assert_int_equal(binv_softmax(c, q, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL, NULL),
                         BINV_SUCCESS);
        clFinish(q);
        clReleaseCommandQueue(q); /* the library may still hold it */
        size_t now = binv_context_retained_objects(c);
        if (now > peak) peak = now;
    }
    /* 300 queues used once: before the fix 600 objects (queue + buffer). */
    assert_true(peak <= base + 3 * (size_t)BINV_WORKSPACES);
    /* Evicted: the library let go (and the driver, its commands long done). */
    assert_int_equal(queue_refs(first), fresh);
    /* The evicted queue works again (a new workspace). */
    assert_int_equal(binv_softmax(c, first, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL, NULL),
                     BINV_SUCCESS);
    clFinish(first);
    clReleaseCommandQueue(first);
    binv_context_destroy(c);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

/* A workspace whose buffer could not be made is not held "in use" for ever:
 * its queue is still evicted later. */
static void test_workspace_failure_evictable(void **state) {
    test_env *env = *state;
    binv_context *c = new_ctx(env);
    cl_mem x = test_buffer(env, 8 * 4, NULL), y = test_buffer(env, 8 * 4, NULL);
    fill_bytes(env, x, 32, 0);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL,
                                  NULL),
                     BINV_SUCCESS);
    clFinish(env->queue);
    cl_int err;
    cl_command_queue q1 = clCreateCommandQueue(env->context, env->device, 0, &err);
    assert_int_equal(err, CL_SUCCESS);
    const cl_uint fresh = queue_refs(q1);
    fail_create_at = 1; /* the workspace buffer of q1 */
    binv_status st = binv_softmax(c, q1, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL, NULL);
    faults_off();
    assert_int_equal(st, CL_MEM_OBJECT_ALLOCATION_FAILURE);
    for (int i = 0; i < BINV_WORKSPACES + 4; i++) {
        cl_command_queue q = clCreateCommandQueue(env->context, env->device, 0, &err);
        assert_int_equal(err, CL_SUCCESS);
        assert_int_equal(binv_softmax(c, q, BINV_DTYPE_F32, 1, 8, x, 0, 8, y, 0, 8, 0, NULL, NULL),
                         BINV_SUCCESS);
        clFinish(q);
        clReleaseCommandQueue(q);
    }
    assert_int_equal(queue_refs(q1), fresh);
    clReleaseCommandQueue(q1);
    binv_context_destroy(c);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

static void test_bounded_rope_tables(void **state) {
    test_env *env = *state;
    binv_context *c = new_ctx(env);
    const float x0[2] = {0.75f, -0.5f};
    cl_mem x = test_buffer(env, 8, x0);
    const cl_uint pos0 = 12345;
    cl_mem pos = test_buffer(env, 4, &pos0);
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 1, 1, 2, x, 0, 2, pos, 0, 10000.0f, 0,
                               NULL, NULL),
                     BINV_SUCCESS);
    float ref[2];
    test_read(env, x, 8, ref);
    const size_t base = binv_context_retained_objects(c);
    size_t peak = 0;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 1, 1, 2, x, 0, 2, pos, 0,
                                   20000.0f + (float)i, 0, NULL, NULL),
                         BINV_SUCCESS);
        if (i % 64 == 0) clFinish(env->queue);
        size_t now = binv_context_retained_objects(c);
        if (now > peak) peak = now;
    }
    clFinish(env->queue);
    /* 2,000 thetas: before the fix 2,001 tables. */
    assert_true(peak <= base + 8);
    /* The first theta was evicted long ago: rebuilt, the same bits. */
    test_write(env, x, 8, x0);
    assert_int_equal(binv_rope(c, env->queue, BINV_DTYPE_F32, 1, 1, 2, x, 0, 2, pos, 0, 10000.0f, 0,
                               NULL, NULL),
                     BINV_SUCCESS);
    float again[2];
    test_read(env, x, 8, again);
    assert_memory_equal(again, ref, sizeof ref);
    binv_context_destroy(c);
    clReleaseMemObject(x);
    clReleaseMemObject(pos);
}

/* Several threads, each cycling through its own queues (more queues in all
 * than the context keeps): evictions race with use and never free a
 * workspace in use; every result has the single-thread bits. */
#define TQ 6
#define TN 4
typedef struct thr {
    const test_env *env;
    binv_context *c;
    cl_mem x;
    const float *ref;
    size_t rows, cols;
    int bad;
} thr;

static void *thread_main(void *p) {
    thr *t = p;
    cl_command_queue qs[TQ];
    cl_int err;
    cl_mem y = clCreateBuffer(t->env->context, CL_MEM_READ_WRITE, t->rows * t->cols * 4, NULL, &err);
    float *h = malloc(t->rows * t->cols * 4);
    for (int i = 0; i < TQ; i++) qs[i] = clCreateCommandQueue(t->env->context, t->env->device, 0, &err);
    for (int it = 0; it < 40; it++) {
        cl_command_queue q = qs[it % TQ];
        if (binv_softmax(t->c, q, BINV_DTYPE_F32, t->rows, t->cols, t->x, 0, t->cols, y, 0, t->cols,
                         0, NULL, NULL) != BINV_SUCCESS)
            t->bad++;
        clEnqueueReadBuffer(q, y, CL_TRUE, 0, t->rows * t->cols * 4, h, 0, NULL, NULL);
        if (memcmp(h, t->ref, t->rows * t->cols * 4)) t->bad++;
    }
    for (int i = 0; i < TQ; i++) clReleaseCommandQueue(qs[i]);
    clReleaseMemObject(y);
    free(h);
    return NULL;
}

static void test_workspace_eviction_threads(void **state) {
    test_env *env = *state;
    binv_context *c = new_ctx(env);
    const size_t rows = 3, cols = 3000; /* several chunks: the workspace is used */
    float *hx = malloc(rows * cols * 4), *ref = malloc(rows * cols * 4);
    for (size_t i = 0; i < rows * cols; i++) hx[i] = (float)((int)(i * 37 % 101) - 50) / 16.0f;
    cl_mem x = test_buffer(env, rows * cols * 4, hx), y = test_buffer(env, rows * cols * 4, NULL);
    assert_int_equal(binv_softmax(c, env->queue, BINV_DTYPE_F32, rows, cols, x, 0, cols, y, 0, cols,
                                  0, NULL, NULL),
                     BINV_SUCCESS);
    test_read(env, y, rows * cols * 4, ref);
    thr t[TN];
    pthread_t id[TN];
    for (int i = 0; i < TN; i++) {
        t[i] = (thr){env, c, x, ref, rows, cols, 0};
        assert_int_equal(pthread_create(&id[i], NULL, thread_main, &t[i]), 0);
    }
    for (int i = 0; i < TN; i++) {
        pthread_join(id[i], NULL);
        assert_int_equal(t[i].bad, 0);
    }
    assert_true(binv_context_retained_objects(c) <= 8 + 3 * (size_t)BINV_WORKSPACES);
    binv_context_destroy(c);
    free(hx);
    free(ref);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_extent_overflow),
        cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_options_torn_field),
        cmocka_unit_test(test_output_batch_metadata),
        cmocka_unit_test(test_read_only_outputs),
        cmocka_unit_test(test_subbuffer_aliasing),
        cmocka_unit_test(test_interleaved_views),
        cmocka_unit_test(test_empty_views),
        cmocka_unit_test(test_foreign_objects),
        cmocka_unit_test(test_attention_all_or_nothing),
        cmocka_unit_test(test_multi_kernel_outputs_untouched),
        cmocka_unit_test(test_bounded_workspaces),
        cmocka_unit_test(test_workspace_failure_evictable),
        cmocka_unit_test(test_bounded_rope_tables),
        cmocka_unit_test(test_workspace_eviction_threads),
    };
    return cmocka_run_group_tests(tests, test_env_setup, test_env_teardown);
}
