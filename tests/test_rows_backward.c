/* binv_rmsnorm_backward: against a double-precision analytic reference (and
 * finite differences of the forward), run-to-run determinism, dx invariant
 * to the batch, the micro-batch rule of dweight, the forward's r bit for bit,
 * in place, rows == 0, bad arguments, golden hashes. */
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

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
#define EPS 1e-5f

/* A problem on the host: x (ld cols + 3), dy (ld cols + 1), weight; dx is
 * written with ld cols + 2.  Storage words of dt. */
typedef struct bprob {
    binv_dtype dt;
    size_t rows, cols, ldx, lddy, lddx;
    unsigned char *x, *dy, *w;
} bprob;

static void bprob_init(bprob *p, binv_dtype dt, size_t rows, size_t cols, uint64_t seed) {
    const size_t es = hx_dtype_size(dt);
    *p = (bprob){dt, rows, cols, cols + 3, cols + 1, cols + 2, NULL, NULL, NULL};
    p->x = malloc(rows * p->ldx * es);
    p->dy = malloc(rows * p->lddy * es);
    p->w = malloc(cols * es);
    assert_true(p->x && p->dy && p->w);
    hx_fill_wide(dt, p->x, rows * p->ldx, seed);
    hx_fill_wide(dt, p->dy, rows * p->lddy, seed + 1);
    hx_fill_wide(dt, p->w, cols, seed + 2);
}

static void bprob_free(bprob *p) { free(p->x); free(p->dy); free(p->w); }

/* Result of a call: dx (rows x cols, packed) and dweight (cols floats). */
typedef struct bout {
    unsigned char *dx;
    float *dw;
} bout;

static void bout_free(bout *o) { free(o->dx); free(o->dw); }

/* Runs rows [row0, row0 + rows) of p, every view at element offset `off`;
 * dweight starts as dw_in (NULL: a 0x5a byte pattern) and is accumulated
 * into when acc.  inplace: 0 separate dx, 1 dx is x, 2 dx is dy (then dx has
 * that view's ld). */
static bout run(const test_env *env, binv_context *ctx, const bprob *p, size_t row0, size_t rows,
                size_t off, int acc, const float *dw_in, int inplace) {
    const size_t es = hx_dtype_size(p->dt), cols = p->cols;
    const size_t nx = off + rows * p->ldx, ndy = off + rows * p->lddy, ndx = off + rows * p->lddx;
    unsigned char *hx = calloc(nx, es), *hdy = calloc(ndy, es), *hdx = malloc(ndx * es);
    float *hdw = malloc((off + cols) * 4);
    assert_true(hx && hdy && hdx && hdw);
    memcpy(hx + off * es, p->x + row0 * p->ldx * es, rows * p->ldx * es);
    memcpy(hdy + off * es, p->dy + row0 * p->lddy * es, rows * p->lddy * es);
    memset(hdx, 0x5a, ndx * es);
    memset(hdw, 0x5a, (off + cols) * 4);
    if (dw_in) memcpy(hdw + off, dw_in, cols * 4);
    cl_mem x = test_buffer(env, nx * es, hx), dy = test_buffer(env, ndy * es, hdy);
    cl_mem w = test_buffer(env, cols * es, p->w), dx = test_buffer(env, ndx * es, hdx);
    cl_mem dw = test_buffer(env, (off + cols) * 4, hdw);
    cl_mem out = inplace == 1 ? x : inplace == 2 ? dy : dx;
    const size_t ldo = inplace == 1 ? p->ldx : inplace == 2 ? p->lddy : p->lddx;
    binv_status st = binv_rmsnorm_backward(ctx, env->queue, p->dt, rows, cols, x, off, p->ldx, w,
                                           0, EPS, dy, off, p->lddy, out, off, ldo, dw, off, acc,
                                           0, NULL, NULL);
    if (st != BINV_SUCCESS) fprintf(stderr, "%s\n", binv_context_last_error(ctx));
    assert_int_equal(st, BINV_SUCCESS);
    const size_t nout = off + rows * ldo;
    unsigned char *ho = malloc(nout * es);
    bout o = {malloc(rows * cols * es + 1), malloc(cols * 4)};
    assert_true(ho && o.dx && o.dw);
    test_read(env, out, nout * es, ho);
    test_read(env, dw, (off + cols) * 4, hdw);
    for (size_t i = 0; i < rows; i++)
        memcpy(o.dx + i * cols * es, ho + (off + i * ldo) * es, cols * es);
    memcpy(o.dw, hdw + off, cols * 4);
    clReleaseMemObject(x); clReleaseMemObject(dy); clReleaseMemObject(w);
    clReleaseMemObject(dx); clReleaseMemObject(dw);
    free(hx); free(hdy); free(hdx); free(hdw); free(ho);
    return o;
}

static double ld_(const bprob *p, const unsigned char *a, size_t i) { return hx_load(p->dt, a, i); }

/* ---- accuracy ------------------------------------------------------------------ */

/* Double-precision analytic reference of row i: dx[cols], r, and the bound
 * scale E[j] = |r g_j| + |x_j| r^3 sum|g x| / cols. */
static double ref_row(const bprob *p, size_t i, double *dx, double *E) {
    const size_t n = p->cols;
    double S = 0, D = 0, Da = 0;
    for (size_t j = 0; j < n; j++) {
        const double x = ld_(p, p->x, i * p->ldx + j), g = ld_(p, p->w, j) * ld_(p, p->dy, i * p->lddy + j);
        S += x * x;
        D += g * x;
        Da += fabs(g * x);
    }
    const double r = 1.0 / sqrt(S / n + (double)EPS);
    for (size_t j = 0; j < n; j++) {
        const double x = ld_(p, p->x, i * p->ldx + j), g = ld_(p, p->w, j) * ld_(p, p->dy, i * p->lddy + j);
        dx[j] = r * g - x * r * r * r * D / n;
        E[j] = fabs(r * g) + fabs(x) * r * r * r * Da / n;
    }
    return r;
}

/* Central differences of the double-precision forward: the loss
 * L = sum_ij dy_ij * y_ij moved by +-h in x's element (i, j) (which = 0) or
 * in weight j (which = 1).  Only what depends on the moved value is
 * evaluated (row i: r(x) * sum_k dy_k w_k x_k, with the sums over the other
 * elements computed once; weight j: its column), so that the rounding of the
 * rest does not swamp the difference.  *scale: |L| of the row (rounding). */
static double central_diff(const bprob *p, int which, size_t i0, size_t j0, double h,
                           double *scale) {
    const size_t n = p->cols;
    if (which == 1) {
        double L[2] = {0, 0};
        for (int s = 0; s < 2; s++)
            for (size_t i = 0; i < p->rows; i++) {
                double S = 0;
                for (size_t j = 0; j < n; j++) S += pow(ld_(p, p->x, i * p->ldx + j), 2);
                const double r = 1.0 / sqrt(S / n + (double)EPS);
                L[s] += ld_(p, p->dy, i * p->lddy + j0) * ld_(p, p->x, i * p->ldx + j0) * r *
                        (ld_(p, p->w, j0) + (s ? -h : h));
            }
        *scale = fabs(L[0]);
        return (L[0] - L[1]) / (2 * h);
    }
    double So = 0, Ao = 0;
    for (size_t j = 0; j < n; j++)
        if (j != j0) {
            const double x = ld_(p, p->x, i0 * p->ldx + j);
            So += x * x;
            Ao += ld_(p, p->dy, i0 * p->lddy + j) * ld_(p, p->w, j) * x;
        }
    const double c = ld_(p, p->dy, i0 * p->lddy + j0) * ld_(p, p->w, j0);
    const double x0 = ld_(p, p->x, i0 * p->ldx + j0);
    double L[2];
    for (int s = 0; s < 2; s++) {
        const double x = x0 + (s ? -h : h);
        L[s] = (Ao + c * x) / sqrt((So + x * x) / n + (double)EPS);
    }
    *scale = fabs(L[0]);
    return (L[0] - L[1]) / (2 * h);
}

/* Bounds (enforced), eps_f = 2^-24, n = 32 + 5 + ceil(cols/1024) terms of
 * the longest chain of one row sum:
 *   dx:      |got - ref| <= (4n + 16) eps_f E + u_out |ref| (+ 2^-24 for f16)
 *   dweight: |got - ref| <= (rows + rows/64 + 2n + 8) eps_f sum_i |dy x r|
 * and the analytic reference agrees with central differences of the
 * double-precision forward to 1e-6 of E (+ the differences' own rounding). */
static void test_accuracy(void **state) {
    test_env *env = *state;
    static const size_t rowss[] = {1, 5, 130}, colss[] = {1, 7, 512, 4096};
    double worst_fd = 0, worst_dx[3] = {0, 0, 0}, worst_dw = 0; /* error / bound */
    for (int d = 0; d < 3; d++)
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++) {
                const size_t rows = rowss[a], cols = colss[b];
                bprob p;
                bprob_init(&p, DTYPES[d], rows, cols, 1000 + 10 * a + b);
                bout o = run(env, env->ctx, &p, 0, rows, 0, 0, NULL, 0);
                double *dx = malloc(cols * sizeof *dx), *E = malloc(cols * sizeof *E);
                double *dw = calloc(cols, sizeof *dw), *dwa = calloc(cols, sizeof *dwa);
                const double ef = ldexp(1.0, -24), n = 37.0 + ceil(cols / 1024.0);
                const double uo = d == 0 ? 0 : ldexp(1.0, d == 1 ? -11 : -8);
                for (size_t i = 0; i < rows; i++) {
                    const double r = ref_row(&p, i, dx, E);
                    for (size_t j = 0; j < cols; j++) {
                        const double got = hx_load(p.dt, o.dx, i * cols + j);
                        const double tol = (4 * n + 16) * ef * E[j] + uo * fabs(dx[j]) +
                                           (p.dt == BINV_DTYPE_F16 ? ldexp(1.0, -24) : 0.0);
                        if (fabs(got - dx[j]) / tol > worst_dx[d]) worst_dx[d] = fabs(got - dx[j]) / tol;
                        if (!(fabs(got - dx[j]) <= tol))
                            fail_msg("dx %s %zux%zu (%zu, %zu): %.9g vs exact %.9g (bound %.3g)",
                                     hx_dtype_name(p.dt), rows, cols, i, j, got, dx[j], tol);
                        const double t = ld_(&p, p.dy, i * p.lddy + j) * ld_(&p, p.x, i * p.ldx + j) * r;
                        dw[j] += t;
                        dwa[j] += fabs(t);
                    }
                    /* Spot checks of the analytic formula by central differences. */
                    for (size_t j = 0; j < cols; j += cols / 3 + 1) {
                        const double h = 1e-4 / r; /* 1e-4 of the row's rms */
                        double Ls;
                        const double fd = central_diff(&p, 0, i, j, h, &Ls);
                        /* beyond the differences' own rounding, relative to E */
                        const double fe = fmax(fabs(fd - dx[j]) - 1e-15 * Ls / h, 0.0) / E[j];
                        if (fe > worst_fd) worst_fd = fe;
                        if (!(fe <= 1e-6))
                            fail_msg("finite difference dx %zux%zu (%zu, %zu): %.9g vs analytic %.9g",
                                     rows, cols, i, j, fd, dx[j]);
                    }
                }
                for (size_t j = 0; j < cols; j++) {
                    const double tol = (rows + rows / 64.0 + 2 * n + 8) * ef * dwa[j];
                    if (fabs(o.dw[j] - dw[j]) / tol > worst_dw) worst_dw = fabs(o.dw[j] - dw[j]) / tol;
                    if (!(fabs(o.dw[j] - dw[j]) <= tol))
                        fail_msg("dweight %s %zux%zu col %zu: %.9g vs exact %.9g (bound %.3g)",
                                 hx_dtype_name(p.dt), rows, cols, j, (double)o.dw[j], dw[j], tol);
                }
                if (rows <= 5)
                    for (size_t j = 0; j < cols; j += cols / 3 + 1) {
                        const double h = 1e-3 * (fabs(ld_(&p, p.w, j)) + 1e-3);
                        double Ls;
                        const double fd = central_diff(&p, 1, 0, j, h, &Ls);
                        if (!(fabs(fd - dw[j]) <= 1e-9 * dwa[j] + 1e-15 * Ls / h))
                            fail_msg("finite difference dweight %zux%zu col %zu: %.9g vs %.9g",
                                     rows, cols, j, fd, dw[j]);
                    }
                free(dx); free(E); free(dw); free(dwa);
                bout_free(&o);
                bprob_free(&p);
            }
    printf("# error / bound: dx max %.3g (f32), %.3g (f16), %.3g (bf16), dweight max %.3g; "
           "finite differences vs the analytic dx: max %.3g of E\n", worst_dx[0], worst_dx[1],
           worst_dx[2], worst_dw, worst_fd);
}

/* rows = 1, dy = 1, weight = 1: dweight = 0 + (0 + 1 * (x * r)) = x * r
 * exactly, the forward's (x * r) * 1 before rounding to the dtype: the
 * backward's r is the forward's, bit for bit (one chunk, several, > 32). */
static void test_forward_r(void **state) {
    test_env *env = *state;
    static const size_t colss[] = {1, 7, 1000, 4096, 5000, 40000};
    for (int d = 0; d < 3; d++)
        for (size_t c = 0; c < 6; c++) {
            bprob p;
            bprob_init(&p, DTYPES[d], 1, colss[c], 50 + c);
            for (size_t j = 0; j < p.cols; j++) {
                hx_store(p.dt, p.dy, j, 1.0f);
                hx_store(p.dt, p.w, j, 1.0f);
            }
            bout o = run(env, env->ctx, &p, 0, 1, 0, 0, NULL, 0);
            const size_t es = hx_dtype_size(p.dt);
            cl_mem x = test_buffer(env, p.cols * es, p.x), w = test_buffer(env, p.cols * es, p.w);
            cl_mem y = test_buffer(env, p.cols * es, NULL);
            assert_int_equal(binv_rmsnorm(env->ctx, env->queue, p.dt, 1, p.cols, x, 0, p.cols, w, 0,
                                          EPS, y, 0, p.cols, 0, NULL, NULL), BINV_SUCCESS);
            unsigned char *hy = malloc(p.cols * es), *hw = malloc(p.cols * es);
            test_read(env, y, p.cols * es, hy);
            for (size_t j = 0; j < p.cols; j++) hx_store(p.dt, hw, j, o.dw[j]);
            if (memcmp(hy, hw, p.cols * es))
                fail_msg("%s cols=%zu: the backward's x*r differs from the forward's",
                         hx_dtype_name(p.dt), p.cols);
            clReleaseMemObject(x); clReleaseMemObject(w); clReleaseMemObject(y);
            free(hy); free(hw);
            bout_free(&o);
            bprob_free(&p);
        }
}

/* ---- bits ---------------------------------------------------------------------- */

static void test_determinism(void **state) {
    test_env *env = *state;
    for (int d = 0; d < 3; d += 2) {
        bprob p;
        bprob_init(&p, DTYPES[d], 130, 5000, 7);
        const size_t bytes = p.rows * p.cols * hx_dtype_size(p.dt);
        bout first = run(env, env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
        for (int rep = 0; rep < 5; rep++) {
            bout again = run(env, rep % 2 ? env->adaptive : env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
            assert_memory_equal(first.dx, again.dx, bytes);
            assert_memory_equal(first.dw, again.dw, p.cols * 4);
            bout_free(&again);
        }
        bout_free(&first);
        bprob_free(&p);
    }
}

/* dx of a row alone, or inside another batch at another position and
 * offset, equals its dx in the full batch; so do dx of rows whose
 * neighbours hold NaN and infinities. */
static void test_row_invariance(void **state) {
    test_env *env = *state;
    static const size_t colss[] = {7, 4096, 5000};
    static const size_t sub[][2] = {{0, 1}, {64, 1}, {129, 1}, {60, 15}, {1, 128}, {63, 67}};
    for (int d = 0; d < 3; d++)
        for (size_t c = 0; c < 3; c++) {
            bprob p;
            bprob_init(&p, DTYPES[d], 130, colss[c], 300 + c);
            const size_t rb = p.cols * hx_dtype_size(p.dt);
            bout full = run(env, env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
            for (size_t s = 0; s < sizeof sub / sizeof *sub; s++) {
                bout o = run(env, env->ctx, &p, sub[s][0], sub[s][1], 1 + s, 0, NULL, 0);
                for (size_t i = 0; i < sub[s][1]; i++)
                    if (memcmp(o.dx + i * rb, full.dx + (sub[s][0] + i) * rb, rb))
                        fail_msg("%s cols=%zu: row %zu in a batch of %zu differs from the batch "
                                 "of 130", hx_dtype_name(p.dt), p.cols, sub[s][0] + i, sub[s][1]);
                bout_free(&o);
            }
            if (p.dt == BINV_DTYPE_F32) {
                float *x = (float *)p.x;
                for (size_t i = 0; i < p.rows; i++)
                    if (i != 70) {
                        x[i * p.ldx] = NAN;
                        x[i * p.ldx + p.cols - 1] = i % 2 ? INFINITY : -INFINITY;
                    }
                bout o = run(env, env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
                assert_memory_equal(o.dx + 70 * rb, full.dx + 70 * rb, rb);
                bout_free(&o);
            }
            bout_free(&full);
            bprob_free(&p);
        }
}

/* Micro-batches split on multiples of R and accumulated give the bits of
 * one call (dweight and dx), from 0 and from a dweight_in. */
static void test_micro_batches(void **state) {
    test_env *env = *state;
    const size_t R = binv_rmsnorm_backward_rows_chunk();
    assert_int_equal(R, 64);
    static const size_t colss[] = {7, 4096};
    for (int d = 0; d < 3; d += 2)
        for (size_t c = 0; c < 2; c++) {
            bprob p;
            bprob_init(&p, DTYPES[d], 3 * R + 8, colss[c], 400 + c);
            const size_t rb = p.cols * hx_dtype_size(p.dt);
            float *dw_in = malloc(p.cols * 4);
            hx_fill_wide(BINV_DTYPE_F32, dw_in, p.cols, 9);
            for (int from = 0; from < 2; from++) {
                bout one = run(env, env->ctx, &p, 0, p.rows, 0, from, from ? dw_in : NULL, 0);
                /* split points (0-terminated lists) */
                static const size_t splits[][4] = {{64, 0}, {128, 0}, {64, 128, 192, 0}};
                for (size_t s = 0; s < 3; s++) {
                    float *dw = malloc(p.cols * 4);
                    memcpy(dw, dw_in, p.cols * 4);
                    size_t at = 0;
                    for (size_t k = 0; k <= 3 && at < p.rows; k++) {
                        const size_t end = k < 3 && splits[s][k] ? splits[s][k] : p.rows;
                        bout part = run(env, env->ctx, &p, at, end - at, k, at ? 1 : from,
                                        dw, 0);
                        for (size_t i = at; i < end; i++)
                            assert_memory_equal(part.dx + (i - at) * rb, one.dx + i * rb, rb);
                        memcpy(dw, part.dw, p.cols * 4);
                        bout_free(&part);
                        at = end;
                    }
                    if (memcmp(dw, one.dw, p.cols * 4))
                        fail_msg("%s cols=%zu split %zu: the accumulated dweight differs from "
                                 "one call", hx_dtype_name(p.dt), p.cols, s);
                    free(dw);
                }
                bout_free(&one);
            }
            free(dw_in);
            bprob_free(&p);
        }
}

/* dx written over dy or over x gives the bits of a separate dx. */
static void test_in_place(void **state) {
    test_env *env = *state;
    for (int d = 0; d < 3; d++) {
        bprob p;
        bprob_init(&p, DTYPES[d], 70, 1100, 21);
        const size_t bytes = p.rows * p.cols * hx_dtype_size(p.dt);
        bout ref = run(env, env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
        for (int ip = 1; ip <= 2; ip++) {
            bout o = run(env, env->ctx, &p, 0, p.rows, 2, 0, NULL, ip);
            assert_memory_equal(o.dx, ref.dx, bytes);
            assert_memory_equal(o.dw, ref.dw, p.cols * 4);
            bout_free(&o);
        }
        bout_free(&ref);
        bprob_free(&p);
    }
}

/* rows == 0: dweight = 0, or left as it is when accumulating; an event. */
static void test_no_rows(void **state) {
    test_env *env = *state;
    float init[8] = {1, 2, 3, 4, 5, 6, 7, 8}, got[8];
    cl_mem x = test_buffer(env, 64, NULL), w = test_buffer(env, 64, NULL);
    cl_mem dw = test_buffer(env, sizeof init, init);
    for (int acc = 1; acc >= 0; acc--) {
        cl_event ev = NULL;
        assert_int_equal(binv_rmsnorm_backward(env->ctx, env->queue, BINV_DTYPE_F32, 0, 8, x, 0, 8,
                                               w, 0, EPS, x, 0, 8, x, 0, 8, dw, 0, acc, 0, NULL,
                                               &ev), BINV_SUCCESS);
        assert_non_null(ev);
        assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
        clReleaseEvent(ev);
        test_read(env, dw, sizeof got, got);
        for (int j = 0; j < 8; j++) assert_true(got[j] == (acc ? init[j] : 0.0f));
    }
    clReleaseMemObject(x); clReleaseMemObject(w); clReleaseMemObject(dw);
}

/* ---- bad arguments ------------------------------------------------------------- */

static void test_bad_args(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_command_queue q = env->queue;
    const binv_dtype F = BINV_DTYPE_F32, H = BINV_DTYPE_BF16;
    const size_t R = 4, C = 8;
    float init[64];
    for (int i = 0; i < 64; i++) init[i] = 99.5f + (float)i;
    cl_mem x = test_buffer(env, 32 * 4, init), w = test_buffer(env, 8 * 4, init);
    cl_mem dy = test_buffer(env, 32 * 4, init), dx = test_buffer(env, 64 * 4, init);
    cl_mem dw = test_buffer(env, 8 * 4, init), small = test_buffer(env, 16, init);
    cl_int err;
    cl_mem ro = clCreateBuffer(env->context, CL_MEM_READ_ONLY, 64 * 4, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_context other = clCreateContext(NULL, 1, &env->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem fa = clCreateBuffer(other, CL_MEM_READ_WRITE, 4096, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    /* dx's second half as a sub-buffer: dweight there shares dx's bytes. */
    cl_uint align_bits = 0;
    clGetDeviceInfo(env->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    const size_t al = align_bits / 8 ? align_bits / 8 : 1;
    cl_mem big = test_buffer(env, al + 64 * 4, NULL);
    cl_buffer_region reg = {al, 8 * 4};
    cl_mem sub = clCreateSubBuffer(big, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
    assert_int_equal(err, CL_SUCCESS);
#define BWD(ctx_, q_, dt_, r_, c_, x_, xo_, ldx_, w_, eps_, dy_, lddy_, dx_, dxo_, lddx_, dw_, dwo_) \
    binv_rmsnorm_backward(ctx_, q_, dt_, r_, c_, x_, xo_, ldx_, w_, 0, eps_, dy_, 0, lddy_, dx_,  \
                          dxo_, lddx_, dw_, dwo_, 1, 0, NULL, NULL)
    struct { binv_status got, want; const char *what; } k[] = {
        {BWD(NULL, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL ctx"},
        {BWD(c, NULL, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL queue"},
        {BWD(c, q, F, R, C, NULL, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL x"},
        {BWD(c, q, F, R, C, x, 0, C, NULL, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL weight"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, NULL, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL dy"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, NULL, 0, C, dw, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL dx"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, NULL, 0), BINV_ERROR_INVALID_ARGUMENT, "NULL dweight"},
        {BWD(c, q, (binv_dtype)4, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_UNSUPPORTED_DTYPE, "dtype 4"},
        {BWD(c, q, F, R, 0, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_DIMENSION, "cols 0"},
        {BWD(c, q, F, (size_t)1 << 31, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_DIMENSION, "rows 2^31"},
        {BWD(c, q, F, R, C, x, 0, C - 1, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldx < cols"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C - 1, dx, 0, C, dw, 0), BINV_ERROR_INVALID_LEADING_DIMENSION, "lddy < cols"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C - 1, dw, 0), BINV_ERROR_INVALID_LEADING_DIMENSION, "lddx < cols"},
        {BWD(c, q, F, R, C, x, 0, C, w, -1.0f, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_VALUE, "eps < 0"},
        {BWD(c, q, F, R, C, x, 0, C, w, NAN, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_VALUE, "eps NaN"},
        {BWD(c, q, F, R, C, x, 0, C, w, INFINITY, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_VALUE, "eps inf"},
        {BWD(c, q, F, R, C, x, 1, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_BUFFER_TOO_SMALL, "x past CL_MEM_SIZE"},
        {BWD(c, q, F, R, C, x, 0, C, small, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_BUFFER_TOO_SMALL, "weight too small"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, small, 0), BINV_ERROR_BUFFER_TOO_SMALL, "dweight too small"},
        {BWD(c, q, H, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dw, 1), BINV_ERROR_BUFFER_TOO_SMALL, "dweight is f32 for bf16"},
        {BWD(c, q, F, R, C, x, SIZE_MAX - 4, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_INVALID_DIMENSION, "offset overflow"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, x, 4, C, dw, 0), BINV_ERROR_ALIASING, "dx shifted over x"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, dy, 4, C, dw, 0), BINV_ERROR_ALIASING, "dx shifted over dy"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dx, 8), BINV_ERROR_ALIASING, "dweight overlaps dx"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, dx, 0, C, x, 8), BINV_ERROR_ALIASING, "dweight overlaps x"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, dx, 0, C, w, 0), BINV_ERROR_ALIASING, "dweight is the weight"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, dx, 0, C, dy, 8), BINV_ERROR_ALIASING, "dweight overlaps dy"},
        {BWD(c, q, F, 2, C, x, 0, C, dx, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_ALIASING, "dx overlaps the weight"},
        {BWD(c, q, F, 2, C, x, 0, C, w, EPS, dy, C, big, al / 4, C, sub, 0), BINV_ERROR_ALIASING, "dweight a sub-buffer of dx"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, ro, 0, C, dw, 0), BINV_ERROR_ACCESS_FLAGS, "dx read-only"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, ro, 0), BINV_ERROR_ACCESS_FLAGS, "dweight read-only"},
        {BWD(c, q, F, R, C, fa, 0, C, w, EPS, dy, C, dx, 0, C, dw, 0), BINV_ERROR_CONTEXT_MISMATCH, "x of another context"},
        {BWD(c, q, F, R, C, x, 0, C, w, EPS, dy, C, dx, 0, C, fa, 0), BINV_ERROR_CONTEXT_MISMATCH, "dweight of another context"},
        {binv_rmsnorm_backward(c, q, F, R, C, x, 0, C, w, 0, EPS, dy, 0, C, dx, 0, C, dw, 0, 0, 1, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "1 event, NULL wait list"},
    };
#undef BWD
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        if (k[i].got != k[i].want)
            fail_msg("%s: got %d (%s), want %d", k[i].what, k[i].got, binv_status_string(k[i].got),
                     k[i].want);
    }
    /* every failing call's message, and nothing written by any of them */
    assert_true(strlen(binv_context_last_error(c)) > 0);
    float now[64];
    clFinish(q);
    test_read(env, dw, 8 * 4, now);
    assert_memory_equal(now, init, 8 * 4);
    test_read(env, x, 32 * 4, now);
    assert_memory_equal(now, init, 32 * 4);
    test_read(env, dy, 32 * 4, now);
    assert_memory_equal(now, init, 32 * 4);
    test_read(env, w, 8 * 4, now);
    assert_memory_equal(now, init, 8 * 4);
    clReleaseMemObject(x); clReleaseMemObject(w); clReleaseMemObject(dy); clReleaseMemObject(dx);
    clReleaseMemObject(dw); clReleaseMemObject(small); clReleaseMemObject(ro);
    clReleaseMemObject(sub); clReleaseMemObject(big); clReleaseMemObject(fa);
    clReleaseContext(other);
}

/* ---- portable bits -------------------------------------------------------------- */

static void test_golden(void **state) {
    test_env *env = *state;
    int bad = 0;
    for (int d = 0; d < 3; d++) {
        bprob p;
        bprob_init(&p, DTYPES[d], 70, 5000, 2024); /* two row chunks, two column chunks */
        bout o = run(env, env->ctx, &p, 0, p.rows, 0, 0, NULL, 0);
        char hex[65], name[96];
        test_sha256_hex(o.dx, p.rows * p.cols * hx_dtype_size(p.dt), hex);
        snprintf(name, sizeof name, "rmsnorm_backward_dx_%s_70x5000", hx_dtype_name(p.dt));
        if (!test_golden_check("rows_backward.txt", name, hex)) bad++;
        test_sha256_hex(o.dw, p.cols * 4, hex);
        snprintf(name, sizeof name, "rmsnorm_backward_dweight_%s_70x5000", hx_dtype_name(p.dt));
        if (!test_golden_check("rows_backward.txt", name, hex)) bad++;
        bout_free(&o);
        bprob_free(&p);
    }
    if (bad) fail_msg("%d golden hashes differ on '%s'", bad, env->device_name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_no_rows),
        cmocka_unit_test(test_forward_r),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_row_invariance),
        cmocka_unit_test(test_micro_batches),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests_name("rows_backward", tests, test_env_setup, test_env_teardown);
}
