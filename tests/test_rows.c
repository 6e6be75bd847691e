/* Row reductions: invariance across row counts, positions, offsets and
 * kernel paths (bits), determinism, accuracy against double precision, the
 * library's exp/log, special values, in place, bad input, golden hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

typedef enum { R_RMS, R_ADDRMS, R_LN, R_SOFTMAX, R_LOGSOFTMAX, R_SUM, R_MEAN, R_NOPS } rop;
static const char *RNAME[] = {"rmsnorm", "add_rmsnorm", "layernorm", "softmax", "log_softmax",
                              "row_sum", "row_mean"};
/* The harness's description of each (harness/op_rows.c). */
static const hx_rows_op HXOP[R_NOPS] = {HX_RMSNORM, HX_ADD_RMSNORM, HX_LAYERNORM, HX_SOFTMAX,
                                        HX_LOG_SOFTMAX, HX_ROW_SUM, HX_ROW_MEAN};
static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

/* A row-reduction problem on the host. */
typedef struct rprob {
    rop op;
    binv_dtype dt;
    size_t rows, cols, ld;
    unsigned char *x, *r, *w, *b; /* storage words */
} rprob;

static void rprob_init(rprob *p, rop op, binv_dtype dt, size_t rows, size_t cols, uint64_t seed) {
    size_t es = hx_dtype_size(dt);
    *p = (rprob){op, dt, rows, cols, cols + 3, NULL, NULL, NULL, NULL};
    p->x = malloc(rows * p->ld * es);
    p->r = malloc(rows * p->ld * es);
    p->w = malloc(cols * es);
    p->b = malloc(cols * es);
    assert_true(p->x && p->r && p->w && p->b);
    hx_fill_wide(dt, p->x, rows * p->ld, seed);
    hx_fill_wide(dt, p->r, rows * p->ld, seed + 1);
    hx_fill_wide(dt, p->w, cols, seed + 2);
    hx_fill_wide(dt, p->b, cols, seed + 3);
}

static void rprob_free(rprob *p) { free(p->x); free(p->r); free(p->w); free(p->b); }

/* Runs rows [row0, row0 + rows) through ctx; x placed at element offset xoff
 * and y at yoff.  Returns y (rows x ld, storage) or, for sum/mean, rows
 * floats; *xout (if not NULL) receives x after the call (add_rmsnorm). */
static void *run(const test_env *env, binv_context *ctx, const rprob *p, size_t row0, size_t rows,
                 size_t xoff, size_t yoff, unsigned char **xout) {
    size_t es = hx_dtype_size(p->dt), n = rows * p->ld;
    unsigned char *xs = calloc(xoff + n, es);
    memcpy(xs + xoff * es, p->x + row0 * p->ld * es, n * es);
    cl_mem x = test_buffer(env, (xoff + n) * es, xs);
    cl_mem r = test_buffer(env, n * es, p->r + row0 * p->ld * es);
    cl_mem w = test_buffer(env, p->cols * es, p->w), b = test_buffer(env, p->cols * es, p->b);
    int vec = p->op == R_SUM || p->op == R_MEAN;
    size_t ybytes = vec ? (yoff + rows) * 4 : (yoff + n) * es;
    unsigned char *zeros = calloc(ybytes, 1); /* padding of y is hashed: define it */
    cl_mem y = test_buffer(env, ybytes, zeros);
    free(zeros);
    const hx_rows call = {HXOP[p->op], p->dt, rows, p->cols, 1e-5f, x, xoff, p->ld, r, 0, p->ld,
                          w, 0, b, 0, y, yoff, p->ld, NULL, 0};
    binv_status st = hx_rows_binv(ctx, env->queue, &call, NULL);
    if (st != BINV_SUCCESS) fprintf(stderr, "%s: %s\n", RNAME[p->op], binv_context_last_error(ctx));
    assert_int_equal(st, BINV_SUCCESS);
    unsigned char *out = malloc(ybytes);
    test_read(env, y, ybytes, out);
    memmove(out, out + yoff * (vec ? 4 : es), ybytes - yoff * (vec ? 4 : es));
    if (xout) {
        *xout = malloc((xoff + n) * es);
        test_read(env, x, (xoff + n) * es, *xout);
        memmove(*xout, *xout + xoff * es, n * es);
    }
    clReleaseMemObject(x); clReleaseMemObject(r); clReleaseMemObject(w); clReleaseMemObject(b);
    clReleaseMemObject(y);
    free(xs);
    return out;
}

/* Row i of a equals row j of b, bitwise. */
static int row_eq(const rprob *p, const void *a, size_t i, const void *b, size_t j) {
    if (p->op == R_SUM || p->op == R_MEAN)
        return memcmp((const float *)a + i, (const float *)b + j, 4) == 0;
    size_t es = hx_dtype_size(p->dt);
    return memcmp((const unsigned char *)a + i * p->ld * es, (const unsigned char *)b + j * p->ld * es,
                  p->cols * es) == 0;
}

/* ---- invariance ----------------------------------------------------------- */

static void check_rows_invariance(void **state, rop op, binv_dtype dt, size_t cols, size_t rmax,
                                  const size_t *rs, size_t nr) {
    test_env *env = *state;
    rprob p;
    rprob_init(&p, op, dt, rmax, cols, 100 + cols + op);
    void *full = run(env, env->ctx, &p, 0, rmax, 0, 0, NULL);
    binv_context *ctxs[3] = {env->ctx, env->rows_forced[0], env->rows_forced[1]};
    for (size_t k = 0; k < nr; k++) {
        size_t m = rs[k];
        if (m > rmax) continue;
        size_t starts[2] = {0, rmax - m};
        for (int si = 0; si < 2; si++)
            for (int ci = 0; ci < 3; ci++) {
                void *out = run(env, ctxs[ci], &p, starts[si], m, (size_t)(ci + si), (size_t)(2 * ci + 1), NULL);
                for (size_t i = 0; i < m; i++)
                    if (!row_eq(&p, out, i, full, starts[si] + i))
                        fail_msg("%s %s cols=%zu: row %zu alone in a batch of %zu (path %d) differs "
                                 "from the batch of %zu", RNAME[op], hx_dtype_name(dt), cols,
                                 starts[si] + i, m, ci, rmax);
                free(out);
            }
    }
    free(full);
    rprob_free(&p);
}

static void test_rows_invariance(void **state) {
    static const size_t rs[] = {1, 2, 3, 7, 64, 257, 1000};
    static const size_t cols[] = {1, 7, 64, 4095, 4096, 14336, 152064};
    for (int op = 0; op < R_NOPS; op++)
        for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
            /* Bounded work on a 2-core CPU: long rows with fewer rows. */
            size_t rmax = cols[c] >= 100000 ? 7 : cols[c] >= 10000 ? 64 : cols[c] >= 4000 ? 257 : 1000;
            for (int d = 0; d < 3; d++) {
                if (d > 0 && cols[c] > 4096) continue; /* 16-bit storage: shorter rows */
                check_rows_invariance(state, (rop)op, DTYPES[d], cols[c], rmax, rs,
                                      sizeof rs / sizeof *rs);
            }
        }
}

/* Other rows hold NaN and Inf: row r's bits do not change. */
static void test_rows_other_rows(void **state) {
    test_env *env = *state;
    for (int op = 0; op < R_NOPS; op++) {
        rprob p;
        rprob_init(&p, (rop)op, BINV_DTYPE_F32, 16, 3000, 9);
        void *ref = run(env, env->ctx, &p, 0, 16, 0, 0, NULL);
        float *x = (float *)p.x;
        for (size_t i = 0; i < 16; i++)
            if (i != 5) {
                x[i * p.ld] = NAN;
                x[i * p.ld + 1] = INFINITY;
                x[i * p.ld + 2] = -INFINITY;
            }
        for (int ci = 0; ci < 2; ci++) {
            void *out = run(env, env->rows_forced[ci], &p, 0, 16, 0, 0, NULL);
            assert_true(row_eq(&p, out, 5, ref, 5));
            free(out);
        }
        free(ref);
        rprob_free(&p);
    }
}

static void test_rows_determinism(void **state) {
    test_env *env = *state;
    for (int op = 0; op < R_NOPS; op++) {
        rprob p;
        rprob_init(&p, (rop)op, BINV_DTYPE_BF16, 3, 40000, 4); /* > 32 chunks: all three kernels */
        void *first = run(env, env->ctx, &p, 0, 3, 0, 0, NULL);
        for (int rep = 0; rep < 10; rep++) {
            void *again = run(env, env->rows_forced[rep % 2], &p, 0, 3, 0, 0, NULL);
            for (size_t i = 0; i < 3; i++) assert_true(row_eq(&p, again, i, first, i));
            free(again);
        }
        free(first);
        rprob_free(&p);
    }
}

/* ---- accuracy --------------------------------------------------------------- */

/* Double-precision reference of row i; returns the values in ref[cols] (or
 * ref[0] for sum/mean), using the storage-rounded x + r for add_rmsnorm. */
static void reference(const rprob *p, size_t i, double *ref) {
    const size_t at = i * p->ld * hx_dtype_size(p->dt);
    double *work = malloc(p->cols * sizeof *work);
    assert_non_null(work);
    hx_rows_ref(HXOP[p->op], p->dt, p->cols, 1e-5, p->x + at, p->r + at, p->w, p->b, ref, work);
    free(work);
}

/* Bounds (enforced):  |y - ref| <= 16 ulp_f32(|ref|) + u_out |ref| + floor,
 * floor = 2^-20 * max|ref| of the row for the norms (cancellation in
 * x - mean), 2^-24 * max|ref| for softmax (absolute), and for sum/mean
 * cols * 2^-24 * sum|x|; for f16 outputs also 2^-24 (its subnormal spacing). */
static void test_rows_accuracy(void **state) {
    test_env *env = *state;
    static const size_t cols[] = {1, 7, 1000, 4096, 33000};
    for (int op = 0; op < R_NOPS; op++)
        for (int d = 0; d < 3; d++)
            for (size_t c = 0; c < 5; c++) {
                rprob p;
                rprob_init(&p, (rop)op, DTYPES[d], 3, cols[c], 77 + c);
                void *out = run(env, env->ctx, &p, 0, 3, 0, 0, NULL);
                double *ref = malloc(cols[c] * sizeof *ref);
                double uo = d == 0 ? 0 : ldexp(1.0, d == 1 ? -11 : -8);
                for (size_t i = 0; i < 3; i++) {
                    reference(&p, i, ref);
                    if (op == R_SUM || op == R_MEAN) {
                        double sa = 0;
                        for (size_t j = 0; j < cols[c]; j++) sa += fabs(hx_load(p.dt, p.x, i * p.ld + j));
                        if (op == R_MEAN) sa /= cols[c];
                        double got = ((float *)out)[i];
                        double tol = (cols[c] + 2) * ldexp(1.0, -24) * sa;
                        if (!(fabs(got - ref[0]) <= tol))
                            fail_msg("%s %s cols=%zu: %.9g vs %.9g", RNAME[op], hx_dtype_name(p.dt), cols[c], got, ref[0]);
                        continue;
                    }
                    double mx = 0;
                    for (size_t j = 0; j < cols[c]; j++) mx = fmax(mx, fabs(ref[j]));
                    double floor_ = (op == R_SOFTMAX || op == R_LOGSOFTMAX) ? ldexp(mx, -24) : ldexp(mx, -20);
                    for (size_t j = 0; j < cols[c]; j++) {
                        double got = hx_load(p.dt, out, i * p.ld + j);
                        /* + the spacing of f16's subnormals (its outputs round to them) */
                        double tol = 16 * ldexp(1.0, -23) * fabs(ref[j]) + uo * fabs(ref[j]) + floor_ +
                                     (p.dt == BINV_DTYPE_F16 ? ldexp(1.0, -24) : 0.0);
                        if (!(fabs(got - ref[j]) <= tol))
                            fail_msg("%s %s cols=%zu row %zu col %zu: %.9g vs exact %.9g (bound %.3g)",
                                     RNAME[op], hx_dtype_name(p.dt), cols[c], i, j, got, ref[j], tol);
                    }
                }
                free(ref);
                free(out);
                rprob_free(&p);
            }
}

/* binv_exp and binv_log against double precision over the float range. */
static void test_math_functions(void **state) {
    test_env *env = *state;
    const char *src =
        "__kernel void t(__global const float *x, __global float *e, __global float *l) {\n"
        "  size_t i = get_global_id(0); e[i] = binv_exp(x[i]); l[i] = binv_log(fabs(x[i])); }\n";
    cl_program prog;
    assert_int_equal(binv_program_get(env->ctx, "mathtest", src, "-DBINV_DTYPE=1", &prog), BINV_SUCCESS);
    enum { N = 1 << 18 };
    float *x = malloc(N * 4), *e = malloc(N * 4), *l = malloc(N * 4);
    uint64_t s = 5;
    for (int i = 0; i < N; i++) {
        if (i < N / 2) x[i] = -104.0f + 193.0f * (float)i / (N / 2); /* exp's whole range */
        else {
            uint32_t u = (uint32_t)(hx_rng_next(&s) % 0x7f800000u); /* every positive float */
            memcpy(&x[i], &u, 4);
        }
    }
    cl_mem bx = test_buffer(env, N * 4, x), be = test_buffer(env, N * 4, NULL), bl = test_buffer(env, N * 4, NULL);
    cl_int err;
    cl_kernel k = clCreateKernel(prog, "t", &err);
    clSetKernelArg(k, 0, sizeof bx, &bx); clSetKernelArg(k, 1, sizeof be, &be); clSetKernelArg(k, 2, sizeof bl, &bl);
    size_t g = N;
    assert_int_equal(clEnqueueNDRangeKernel(env->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL), CL_SUCCESS);
    test_read(env, be, N * 4, e);
    test_read(env, bl, N * 4, l);
    double worst_e = 0, worst_l = 0;
    for (int i = 0; i < N; i++) {
        double re = exp((double)x[i]), rl = log(fabs((double)x[i]));
        /* ulp of the exact value in float, down to the subnormal spacing. */
        double ue = fmax(ldexp(1.0, ilogb(re) - 23), ldexp(1.0, -149));
        double ul = ldexp(1.0, ilogb(rl) - 23);
        if (re > 3.4028234663852886e38) { assert_true(isinf(e[i])); continue; }
        double de = fabs(e[i] - re) / ue, dl = rl == 0 ? fabs(l[i]) : fabs(l[i] - rl) / ul;
        if (de > worst_e) worst_e = de;
        if (i >= N / 2 && dl > worst_l) worst_l = dl;
    }
    printf("# binv_exp max error %.2f ulp, binv_log max error %.2f ulp (%d points each)\n", worst_e,
           worst_l, N / 2);
    assert_true(worst_e <= 2.0);
    assert_true(worst_l <= 2.0);
    float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, 89.0f, -105.0f};
    cl_mem bs = test_buffer(env, sizeof specials, specials);
    clSetKernelArg(k, 0, sizeof bs, &bs);
    g = 6;
    clEnqueueNDRangeKernel(env->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL);
    test_read(env, be, 6 * 4, e);
    test_read(env, bl, 6 * 4, l);
    assert_true(isnan(e[0]) && isinf(e[1]) && e[2] == 0.0f && e[3] == 1.0f && isinf(e[4]) && e[5] == 0.0f);
    assert_true(isnan(l[0]) && isinf(l[1]) && l[3] == -INFINITY);
    clReleaseKernel(k);
    clReleaseMemObject(bx); clReleaseMemObject(be); clReleaseMemObject(bl); clReleaseMemObject(bs);
    free(x); free(e); free(l);
}

/* ---- special values, in place, fused add ------------------------------------ */

static void test_softmax_special(void **state) {
    test_env *env = *state;
    const size_t cols = 2500; /* three chunks */
    float *x = malloc(4 * cols * 4);
    for (size_t j = 0; j < 4 * cols; j++) x[j] = (float)(j % 97) * 0.125f;
    for (size_t j = 0; j < cols; j++) x[j] = -INFINITY;           /* row 0: all -inf */
    x[cols + 1234] = NAN;                                          /* row 1: a NaN */
    x[2 * cols + 7] = INFINITY;                                    /* row 2: +inf */
    for (size_t j = 0; j < 2000; j++) x[3 * cols + j] = -INFINITY; /* row 3: two chunks of -inf */
    x[3 * cols + 2100] = 1e30f;                                    /* ... and a huge value */
    cl_mem bx = test_buffer(env, 4 * cols * 4, x), by = test_buffer(env, 4 * cols * 4, NULL);
    float *y = malloc(4 * cols * 4);
    for (int ci = 0; ci < 2; ci++) {
        assert_int_equal(binv_softmax(env->rows_forced[ci], env->queue, BINV_DTYPE_F32, 4, cols, bx, 0, cols, by, 0, cols, 0, NULL, NULL), BINV_SUCCESS);
        test_read(env, by, 4 * cols * 4, y);
        for (size_t j = 0; j < 3 * cols; j++) assert_true(isnan(y[j]));
        for (size_t j = 0; j < cols; j++) assert_true(y[3 * cols + j] == (j == 2100 ? 1.0f : 0.0f));
        assert_int_equal(binv_log_softmax(env->rows_forced[ci], env->queue, BINV_DTYPE_F32, 4, cols, bx, 0, cols, by, 0, cols, 0, NULL, NULL), BINV_SUCCESS);
        test_read(env, by, 4 * cols * 4, y);
        assert_true(y[3 * cols + 2100] == 0.0f && y[3 * cols] == -INFINITY && isnan(y[cols + 5]));
    }
    clReleaseMemObject(bx); clReleaseMemObject(by);
    free(x); free(y);
}

static void test_in_place_and_add(void **state) {
    test_env *env = *state;
    for (int op = R_RMS; op <= R_LOGSOFTMAX; op++) {
        if (op == R_ADDRMS) continue;
        rprob p;
        rprob_init(&p, (rop)op, BINV_DTYPE_F16, 5, 3000, 12);
        void *ref = run(env, env->ctx, &p, 0, 5, 0, 0, NULL);
        size_t es = 2, n = 5 * p.ld;
        cl_mem x = test_buffer(env, n * es, p.x), w = test_buffer(env, p.cols * es, p.w),
               b = test_buffer(env, p.cols * es, p.b);
        binv_status st;
        if (op == R_RMS) st = binv_rmsnorm(env->ctx, env->queue, p.dt, 5, p.cols, x, 0, p.ld, w, 0, 1e-5f, x, 0, p.ld, 0, NULL, NULL);
        else if (op == R_LN) st = binv_layernorm(env->ctx, env->queue, p.dt, 5, p.cols, x, 0, p.ld, w, 0, b, 0, 1e-5f, x, 0, p.ld, 0, NULL, NULL);
        else if (op == R_SOFTMAX) st = binv_softmax(env->rows_forced[1], env->queue, p.dt, 5, p.cols, x, 0, p.ld, x, 0, p.ld, 0, NULL, NULL);
        else st = binv_log_softmax(env->rows_forced[1], env->queue, p.dt, 5, p.cols, x, 0, p.ld, x, 0, p.ld, 0, NULL, NULL);
        assert_int_equal(st, BINV_SUCCESS);
        unsigned char *got = malloc(n * es);
        test_read(env, x, n * es, got);
        for (size_t i = 0; i < 5; i++) assert_true(row_eq(&p, got, i, ref, i));
        free(got); free(ref);
        clReleaseMemObject(x); clReleaseMemObject(w); clReleaseMemObject(b);
        rprob_free(&p);
    }
    /* add_rmsnorm: x receives x + r; y equals rmsnorm of the updated x. */
    rprob p;
    rprob_init(&p, R_ADDRMS, BINV_DTYPE_BF16, 4, 5000, 13);
    unsigned char *xafter;
    void *y = run(env, env->rows_forced[1], &p, 0, 4, 0, 0, &xafter);
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < p.cols; j++) {
            unsigned char t[2];
            hx_store(p.dt, t, 0, hx_load(p.dt, p.x, i * p.ld + j) + hx_load(p.dt, p.r, i * p.ld + j));
            assert_memory_equal(t, xafter + (i * p.ld + j) * 2, 2);
        }
    memcpy(p.x, xafter, 4 * p.ld * 2);
    p.op = R_RMS;
    void *y2 = run(env, env->ctx, &p, 0, 4, 0, 0, NULL);
    for (size_t i = 0; i < 4; i++) assert_true(row_eq(&p, y, i, y2, i));
    free(y); free(y2); free(xafter);
    rprob_free(&p);
}

/* Exact sums: small integers. */
static void test_row_sum_exact(void **state) {
    test_env *env = *state;
    const size_t rows = 3, cols = 5000;
    float *x = malloc(rows * cols * 4);
    for (size_t i = 0; i < rows * cols; i++) x[i] = (float)((int)(i % 13) - 6);
    cl_mem bx = test_buffer(env, rows * cols * 4, x), bo = test_buffer(env, rows * 4, NULL);
    float out[3];
    assert_int_equal(binv_row_sum(env->ctx, env->queue, BINV_DTYPE_F32, rows, cols, bx, 0, cols, bo, 0, 0, NULL, NULL), BINV_SUCCESS);
    test_read(env, bo, sizeof out, out);
    for (size_t i = 0; i < rows; i++) {
        double s = 0;
        for (size_t j = 0; j < cols; j++) s += x[i * cols + j];
        assert_true(out[i] == (float)s);
    }
    clReleaseMemObject(bx); clReleaseMemObject(bo);
    free(x);
}

/* ---- bad input ------------------------------------------------------------ */

static void test_rows_bad_input(void **state) {
    test_env *env = *state;
    binv_context *ctx = env->ctx;
    cl_command_queue q = env->queue;
    const size_t rows = 4, cols = 8;
    float init[64];
    for (int i = 0; i < 64; i++) init[i] = 99.5f + (float)i;
    cl_mem x = test_buffer(env, 32 * 4, NULL), w = test_buffer(env, 8 * 4, NULL);
    cl_mem y = test_buffer(env, 64 * 4, init), small = test_buffer(env, 8, NULL);
    const binv_dtype F = BINV_DTYPE_F32;
    struct { binv_status got, want; const char *what; } c[] = {
        {binv_rmsnorm(NULL, q, F, rows, cols, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "NULL ctx"},
        {binv_rmsnorm(ctx, NULL, F, rows, cols, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "NULL queue"},
        {binv_rmsnorm(ctx, q, F, rows, cols, NULL, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "NULL x"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 0, cols, NULL, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "NULL weight"},
        {binv_softmax(ctx, q, F, rows, cols, x, 0, cols, NULL, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "NULL y"},
        {binv_rmsnorm(ctx, q, F, rows, 0, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION, "cols 0"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 0, cols - 1, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldx < cols"},
        {binv_softmax(ctx, q, F, rows, cols, x, 0, cols, y, 0, cols - 1, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldy < cols"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 1, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL, "x past CL_MEM_SIZE"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 0, cols, small, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL, "weight too small"},
        {binv_row_sum(ctx, q, F, rows, cols, x, 0, cols, small, 0, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL, "out too small"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 0, cols, w, 0, -1.0f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE, "eps < 0"},
        {binv_layernorm(ctx, q, F, rows, cols, x, 0, cols, w, 0, w, 0, NAN, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE, "eps NaN"},
        {binv_softmax(ctx, q, (binv_dtype)0, rows, cols, x, 0, cols, y, 0, cols, 0, NULL, NULL), BINV_ERROR_UNSUPPORTED_DTYPE, "dtype 0"},
        {binv_softmax(ctx, q, F, rows, cols, x, 0, cols, x, 1, cols, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL, "shifted in place view too small"},
        {binv_softmax(ctx, q, F, 2, cols, y, 0, cols, y, 3, cols, 0, NULL, NULL), BINV_ERROR_ALIASING, "y partially overlaps x"},
        {binv_add_rmsnorm(ctx, q, F, rows, cols, x, 0, cols, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_ALIASING, "residual is x"},
        {binv_add_rmsnorm(ctx, q, F, rows, cols, y, 0, cols, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0, NULL, NULL), BINV_ERROR_ALIASING, "add_rmsnorm in place"},
        {binv_rmsnorm(ctx, q, F, rows, cols, x, 0, cols, y, 0, 1e-5f, y, 4, cols, 0, NULL, NULL), BINV_ERROR_ALIASING, "weight overlaps y"},
        {binv_softmax(ctx, q, F, (size_t)1 << 33, cols, x, 0, cols, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION, "rows >= 2^31"},
        {binv_softmax(ctx, q, F, rows, cols, x, SIZE_MAX - 4, cols, y, 0, cols, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION, "offset overflow"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        if (c[i].got != c[i].want)
            fail_msg("%s: got %d (%s), want %d", c[i].what, c[i].got, binv_status_string(c[i].got), c[i].want);
    }
    assert_true(strlen(binv_context_last_error(ctx)) > 0);
    /* rows == 0: a no-op that still returns an event. */
    cl_event ev = NULL;
    assert_int_equal(binv_softmax(ctx, q, F, 0, cols, x, 0, cols, y, 0, cols, 0, NULL, &ev), BINV_SUCCESS);
    assert_non_null(ev);
    clReleaseEvent(ev);
    float now[64];
    test_read(env, y, sizeof now, now);
    assert_memory_equal(now, init, sizeof now); /* nothing written by any failing call */
    clReleaseMemObject(x); clReleaseMemObject(w); clReleaseMemObject(y); clReleaseMemObject(small);
}

/* ---- portable bits -------------------------------------------------------- */

static void test_rows_golden(void **state) {
    test_env *env = *state;
    int bad = 0;
    for (int op = 0; op < R_NOPS; op++)
        for (int d = 0; d < 3; d++) {
            rprob p;
            rprob_init(&p, (rop)op, DTYPES[d], 5, 5000, 2024);
            void *out = run(env, env->ctx, &p, 0, 5, 0, 0, NULL);
            size_t bytes = (op == R_SUM || op == R_MEAN) ? 5 * 4 : 5 * p.ld * hx_dtype_size(p.dt);
            char hex[65], name[96];
            test_sha256_hex(out, bytes, hex);
            snprintf(name, sizeof name, "%s_%s_5x5000", RNAME[op], hx_dtype_name(p.dt));
            if (!test_golden_check("rows.txt", name, hex)) bad++;
            free(out);
            rprob_free(&p);
        }
    if (bad) fail_msg("%d golden hashes differ on '%s'", bad, env->device_name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_bad_input),
        cmocka_unit_test(test_math_functions),
        cmocka_unit_test(test_row_sum_exact),
        cmocka_unit_test(test_softmax_special),
        cmocka_unit_test(test_in_place_and_add),
        cmocka_unit_test(test_rows_accuracy),
        cmocka_unit_test(test_rows_determinism),
        cmocka_unit_test(test_rows_other_rows),
        cmocka_unit_test(test_rows_golden),
        cmocka_unit_test(test_rows_invariance),
    };
    return cmocka_run_group_tests_name("rows", tests, test_env_setup, test_env_teardown);
}
