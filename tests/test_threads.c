/* Thread stress: 8 host threads share one binv_context (created cold, so
 * that they race on the first builds of every program, on the kernel pool,
 * the per-queue workspaces, the RoPE tables and the error slots).  Threads
 * 0..5 have a queue each; threads 6 and 7 share one (binv.h: calls that share
 * a queue from several threads are serialised around its workspace).  Each
 * thread runs a mix of every op family for a few iterations, into buffers of
 * its own, and every result must be bitwise equal to the single-thread
 * result of the same call on another context.  Every thread also makes a
 * failing call and checks that it reads its own message.
 * Under ThreadSanitizer (ci/sanitize.sh) the same binary looks for data
 * races in the library's shared state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "common.h"

enum { NTHREADS = 8, ITERS = 3 };
enum { GM1 = 1, GM2 = 40, GN = 48, GK = 700, RR = 5, RC = 300, SC = 64 };
enum { PAGES = 24, KVH = 2, HD = 32, HEADS = 4, MAXP = 20, TOK = 4 };
static const cl_uint QL[2] = {3, 1}, CLEN[2] = {290, 9};

/* The inputs (shared, read-only) and one set of outputs. */
typedef struct outs {
    cl_mem c1[2], c2[2], y_rms, y_ln, y_sm, s_sum, y_sw, q, o, kp, vp;
} outs;
typedef struct ins {
    cl_mem a[2], b[2], x, w, gam, bet, gate, up, q, kn, vn, kp, vp;
} ins;

static const binv_dtype GEMM_DT[2] = {BINV_DTYPE_F32, BINV_DTYPE_BF16};
static ins IN;
static size_t sz_q, sz_pool;

static void make_inputs(const test_env *env) {
    void *h = malloc((size_t)PAGES * 16 * KVH * HD * 4 + (size_t)GN * GK * 4 + 4096);
    for (int d = 0; d < 2; d++) {
        const size_t es = hx_dtype_size(GEMM_DT[d]);
        hx_fill_wide(GEMM_DT[d], h, (size_t)GM2 * GK, 11 + d);
        IN.a[d] = test_buffer(env, (size_t)GM2 * GK * es, h);
        hx_fill_wide(GEMM_DT[d], h, (size_t)GN * GK, 21 + d);
        IN.b[d] = test_buffer(env, (size_t)GN * GK * es, h);
    }
    const binv_dtype f = BINV_DTYPE_F32;
    hx_fill_wide(f, h, RR * RC, 31);
    IN.x = test_buffer(env, RR * RC * 4, h);
    hx_fill_wide(f, h, RC, 32);
    IN.w = test_buffer(env, RC * 4, h);
    hx_fill_wide(f, h, RC, 33);
    IN.gam = test_buffer(env, RC * 4, h);
    hx_fill_wide(f, h, RC, 34);
    IN.bet = test_buffer(env, RC * 4, h);
    hx_fill_wide(f, h, RR * SC, 35);
    IN.gate = test_buffer(env, RR * SC * 4, h);
    hx_fill_wide(f, h, RR * SC, 36);
    IN.up = test_buffer(env, RR * SC * 4, h);
    sz_q = (size_t)TOK * HEADS * HD * 4;
    sz_pool = (size_t)PAGES * 16 * KVH * HD * 4;
    hx_fill_wide(f, h, TOK * HEADS * HD, 37);
    IN.q = test_buffer(env, sz_q, h);
    hx_fill_wide(f, h, TOK * KVH * HD, 38);
    IN.kn = test_buffer(env, (size_t)TOK * KVH * HD * 4, h);
    hx_fill_wide(f, h, TOK * KVH * HD, 39);
    IN.vn = test_buffer(env, (size_t)TOK * KVH * HD * 4, h);
    hx_fill_wide(f, h, PAGES * 16 * KVH * HD, 40);
    IN.kp = test_buffer(env, sz_pool, h);
    hx_fill_wide(f, h, PAGES * 16 * KVH * HD, 41);
    IN.vp = test_buffer(env, sz_pool, h);
    free(h);
}

static void make_outs(const test_env *env, outs *o) {
    for (int d = 0; d < 2; d++) {
        const size_t es = hx_dtype_size(GEMM_DT[d]);
        o->c1[d] = test_buffer(env, (size_t)GM1 * GN * es, NULL);
        o->c2[d] = test_buffer(env, (size_t)GM2 * GN * es, NULL);
    }
    o->y_rms = test_buffer(env, RR * RC * 4, NULL);
    o->y_ln = test_buffer(env, RR * RC * 4, NULL);
    o->y_sm = test_buffer(env, RR * RC * 4, NULL);
    o->s_sum = test_buffer(env, RR * 4, NULL);
    o->y_sw = test_buffer(env, RR * SC * 4, NULL);
    o->q = test_buffer(env, sz_q, NULL);
    o->o = test_buffer(env, sz_q, NULL);
    o->kp = test_buffer(env, sz_pool, NULL);
    o->vp = test_buffer(env, sz_pool, NULL);
}
static void free_outs(outs *o) {
    cl_mem *m = (cl_mem *)o;
    for (size_t i = 0; i < sizeof *o / sizeof(cl_mem); i++) clReleaseMemObject(m[i]);
}

/* One iteration of the mix on (ctx, q) into o.  Returns the first failing
 * status (and its message in msg). */
static binv_status run_mix(binv_context *ctx, cl_command_queue q, outs *o, int variant,
                           char *msg, size_t msgsz) {
    binv_status st = BINV_SUCCESS;
#define RUN(call)                                                                   \
    do {                                                                            \
        if ((st = (call)) != BINV_SUCCESS) {                                        \
            snprintf(msg, msgsz, "%s: %d %s", #call, st, binv_context_last_error(ctx)); \
            return st;                                                              \
        }                                                                           \
    } while (0)
    /* The order of the ops rotates with `variant`, so that the threads do
     * different things at the same moment. */
    for (int step = 0; step < 7; step++) {
        switch ((step + variant) % 7) {
        case 0:
            for (int d = 0; d < 2; d++)
                RUN(binv_gemm(ctx, q, GEMM_DT[d], BINV_NO_TRANS, BINV_TRANS, GM1, GN, GK, 1.0f,
                              IN.a[d], 0, GK, IN.b[d], 0, GK, 0.0f, o->c1[d], 0, GN, 0, NULL, NULL));
            break;
        case 1:
            for (int d = 0; d < 2; d++)
                RUN(binv_gemm(ctx, q, GEMM_DT[d], BINV_NO_TRANS, BINV_TRANS, GM2, GN, GK, 1.0f,
                              IN.a[d], 0, GK, IN.b[d], 0, GK, 0.0f, o->c2[d], 0, GN, 0, NULL, NULL));
            break;
        case 2:
            RUN(binv_rmsnorm(ctx, q, BINV_DTYPE_F32, RR, RC, IN.x, 0, RC, IN.w, 0, 1e-5f, o->y_rms,
                             0, RC, 0, NULL, NULL));
            RUN(binv_row_sum(ctx, q, BINV_DTYPE_F32, RR, RC, IN.x, 0, RC, o->s_sum, 0, 0, NULL,
                             NULL));
            break;
        case 3:
            RUN(binv_layernorm(ctx, q, BINV_DTYPE_F32, RR, RC, IN.x, 0, RC, IN.gam, 0, IN.bet, 0,
                               1e-5f, o->y_ln, 0, RC, 0, NULL, NULL));
            break;
        case 4:
            RUN(binv_softmax(ctx, q, BINV_DTYPE_F32, RR, RC, IN.x, 0, RC, o->y_sm, 0, RC, 0, NULL,
                             NULL));
            break;
        case 5:
            RUN(binv_swiglu(ctx, q, BINV_DTYPE_F32, RR, SC, IN.gate, 0, SC, IN.up, 0, SC, o->y_sw,
                            0, SC, 0, NULL, NULL));
            break;
        case 6: {
            /* A decode/prefill step: own copies of q and the pools (written). */
            cl_int e1 = clEnqueueCopyBuffer(q, IN.q, o->q, 0, 0, sz_q, 0, NULL, NULL);
            cl_int e2 = clEnqueueCopyBuffer(q, IN.kp, o->kp, 0, 0, sz_pool, 0, NULL, NULL);
            cl_int e3 = clEnqueueCopyBuffer(q, IN.vp, o->vp, 0, 0, sz_pool, 0, NULL, NULL);
            if (e1 || e2 || e3) {
                snprintf(msg, msgsz, "clEnqueueCopyBuffer: %d %d %d", e1, e2, e3);
                return e1 ? e1 : e2 ? e2 : e3;
            }
            cl_uint pt[2 * MAXP];
            for (int i = 0; i < MAXP; i++) {
                pt[i] = (cl_uint)(MAXP - 1 - i);
                pt[MAXP + i] = 23 - (cl_uint)(i % 4);
            }
            binv_kv_batch *b = NULL;
            RUN(binv_kv_batch_create(ctx, q, PAGES, 2, QL, CLEN, pt, MAXP, &b));
            binv_kv_cache cache = {BINV_DTYPE_F32, PAGES, KVH, HD, o->kp, o->vp};
            binv_status s2 = binv_kv_append(ctx, q, &cache, b, IN.kn, 0, KVH * HD, IN.vn, 0,
                                            KVH * HD, 0, NULL, NULL);
            if (s2 == BINV_SUCCESS)
                s2 = binv_rope(ctx, q, BINV_DTYPE_F32, TOK, HEADS, HD, o->q, 0, HEADS * HD,
                               binv_kv_batch_positions(b), 0, 10000.0f + (float)(variant % 2),
                               0, NULL, NULL);
            if (s2 == BINV_SUCCESS)
                s2 = binv_attention(ctx, q, &cache, b, HEADS, 0.125f, o->q, 0, HEADS * HD, o->o,
                                    0, HEADS * HD, 0, NULL, NULL);
            if (s2 != BINV_SUCCESS)
                snprintf(msg, msgsz, "kv step: %d %s", s2, binv_context_last_error(ctx));
            /* The batch's buffers may still be in use by the queue. */
            clFinish(q);
            binv_kv_batch_destroy(b);
            if (s2 != BINV_SUCCESS) return s2;
            break;
        }
        }
    }
#undef RUN
    return clFinish(q);
}

typedef struct result {
    unsigned char *bytes;
    size_t n;
} result;

/* Reads every output of o into r (on q). */
static void read_outs(cl_command_queue q, outs *o, result *r, int variant) {
    cl_mem m[] = {o->c1[0], o->c1[1], o->c2[0], o->c2[1], o->y_rms, o->y_ln, o->y_sm,
                  o->s_sum, o->y_sw, o->q, o->o, o->kp, o->vp};
    size_t total = 0, s;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        clGetMemObjectInfo(m[i], CL_MEM_SIZE, sizeof s, &s, NULL);
        total += s;
    }
    r->bytes = malloc(total);
    r->n = total;
    size_t off = 0;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        clGetMemObjectInfo(m[i], CL_MEM_SIZE, sizeof s, &s, NULL);
        clEnqueueReadBuffer(q, m[i], CL_TRUE, 0, s, r->bytes + off, 0, NULL, NULL);
        off += s;
    }
    (void)variant;
}

typedef struct worker {
    const test_env *env;
    binv_context *ctx;
    cl_command_queue q;
    int id;
    pthread_barrier_t *start;
    outs o;
    result res[ITERS];
    binv_status st;
    int wrong_message;
    char msg[512];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int it = 0; it < ITERS && w->st == BINV_SUCCESS; it++) {
        /* Scribble over the outputs: each iteration must write all of them. */
        cl_mem *m = (cl_mem *)&w->o;
        const unsigned char pat = (unsigned char)(0x11 * (it + 1));
        for (size_t i = 0; i < sizeof w->o / sizeof(cl_mem); i++) {
            size_t s;
            clGetMemObjectInfo(m[i], CL_MEM_SIZE, sizeof s, &s, NULL);
            clEnqueueFillBuffer(w->q, m[i], &pat, 1, 0, s, 0, NULL, NULL);
        }
        w->st = run_mix(w->ctx, w->q, &w->o, w->id + it, w->msg, sizeof w->msg);
        if (w->st == BINV_SUCCESS) read_outs(w->q, &w->o, &w->res[it], w->id + it);
        /* A failing call: this thread's message, not another thread's. */
        char want[64];
        snprintf(want, sizeof want, "ldx=%d", 17 + w->id);
        binv_status e = binv_softmax(w->ctx, w->q, BINV_DTYPE_F32, 1, 40, IN.x, 0,
                                     (size_t)(17 + w->id), w->o.y_sm, 0, 40, 0, NULL, NULL);
        if (e != BINV_ERROR_INVALID_LEADING_DIMENSION ||
            !strstr(binv_context_last_error(w->ctx), want))
            w->wrong_message = 1;
    }
    return NULL;
}

static void test_threads_bitwise(void **state) {
    test_env *env = *state;
    make_inputs(env);
    /* Single-thread reference on the fixture's context and queue. */
    outs ref_o;
    make_outs(env, &ref_o);
    result ref[2];
    char msg[512] = "";
    for (int v = 0; v < 2; v++) {
        binv_status st = run_mix(env->ctx, env->queue, &ref_o, v, msg, sizeof msg);
        if (st != BINV_SUCCESS) fail_msg("single-thread run: %s", msg);
        read_outs(env->queue, &ref_o, &ref[v], v);
    }

    /* A cold context shared by 8 threads. */
    binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    binv_context *ctx = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, &opt, &ctx), BINV_SUCCESS);
    cl_command_queue queues[NTHREADS - 1];
    for (int i = 0; i < NTHREADS - 1; i++) {
        cl_int err;
        queues[i] = clCreateCommandQueue(env->context, env->device, 0, &err);
        assert_int_equal(err, CL_SUCCESS);
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].env = env;
        w[i].ctx = ctx;
        w[i].q = queues[i < NTHREADS - 1 ? i : NTHREADS - 2]; /* threads 6 and 7 share */
        w[i].id = i;
        w[i].start = &start;
        make_outs(env, &w[i].o);
    }
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    int bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        if (w[i].st != BINV_SUCCESS) {
            print_error("thread %d: %s\n", i, w[i].msg);
            bad++;
            continue;
        }
        if (w[i].wrong_message) {
            print_error("thread %d read a message that is not its own\n", i);
            bad++;
        }
        for (int it = 0; it < ITERS; it++) {
            const result *r = &w[i].res[it], *e = &ref[(i + it) % 2];
            if (r->n != e->n || memcmp(r->bytes, e->bytes, r->n)) {
                size_t k = 0;
                while (k < r->n && r->bytes[k] == e->bytes[k]) k++;
                print_error("thread %d iteration %d: bits differ from the single-thread run "
                            "(first at byte %zu)\n", i, it, k);
                bad++;
            }
            free(r->bytes);
        }
        free_outs(&w[i].o);
    }
    for (int v = 0; v < 2; v++) free(ref[v].bytes);
    free_outs(&ref_o);
    for (int i = 0; i < NTHREADS - 1; i++) clReleaseCommandQueue(queues[i]);
    binv_context_destroy(ctx);
    cl_mem *m = (cl_mem *)&IN;
    for (size_t i = 0; i < sizeof IN / sizeof(cl_mem); i++) clReleaseMemObject(m[i]);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_bitwise),
    };
    return cmocka_run_group_tests(tests, test_env_setup, test_env_teardown);
}
