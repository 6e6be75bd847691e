/* Outputs after a failed multi-kernel call (all or nothing) and the bounds
 * of a long-lived context's caches.  (Argument validation:
 * test_reliability_args.c.)
 *
 * Each test is a regression test of issue 15: it fails on the code before
 * the fix.  OpenCL calls are interposed (clSetKernelArg,
 * clEnqueueNDRangeKernel, clCreateBuffer: this executable's definitions win
 * over libOpenCL's for the statically linked library) to fail one chosen
 * call. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
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

static binv_context *new_ctx(const test_env *env) {
    binv_context *c = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, NULL, &c), BINV_SUCCESS);
    return c;
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
        cmocka_unit_test(test_attention_all_or_nothing),
        cmocka_unit_test(test_multi_kernel_outputs_untouched),
        cmocka_unit_test(test_bounded_workspaces),
        cmocka_unit_test(test_workspace_failure_evictable),
        cmocka_unit_test(test_bounded_rope_tables),
        cmocka_unit_test(test_workspace_eviction_threads),
    };
    return cmocka_run_group_tests(tests, test_env_setup, test_env_teardown);
}
