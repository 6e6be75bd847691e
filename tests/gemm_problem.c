/* GEMM problems on the host for the binv_gemm suites (test_gemm,
 * test_gemm_native): operands with padded strides, a run of some rows on
 * the device, bitwise row comparison and the forward error bound, on the
 * harness's GEMM description (harness/op_gemm.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gemm_problem.h"

hx_gemm problem_desc(const problem *p, size_t m, float alpha, float beta) {
    const hx_gemm g = {p->dtype, p->ta, p->tb, m, p->n, p->k, p->lda, p->ldb, p->ldc, alpha, beta};
    return g;
}

/* ldb_pad: elements of padding per row of B (1 makes rows misaligned, and A's
 * 3; 0 or a multiple of 8 with k a multiple of 4 pads A and B alike so that
 * the vector-load paths run). */
void problem_init_pad(problem *p, binv_dtype dt, binv_transpose ta, binv_transpose tb, size_t m,
                      size_t n, size_t k, uint64_t seed, size_t ldb_pad) {
    memset(p, 0, sizeof *p);
    p->dtype = dt; p->ta = ta; p->tb = tb; p->m = m; p->n = n; p->k = k;
    p->lda = (ta == BINV_NO_TRANS ? k : m) + (ldb_pad == 1 ? 3 : ldb_pad);
    p->ldb = (tb == BINV_NO_TRANS ? n : k) + ldb_pad;
    p->ldc = n + 2;
    const hx_gemm g = problem_desc(p, m, 1.0f, 0.0f);
    p->a_elems = hx_gemm_a_elems(&g);
    p->b_elems = hx_gemm_b_elems(&g);
    p->c_elems = hx_gemm_c_elems(&g);
    size_t es = hx_dtype_size(dt);
    p->a = malloc(p->a_elems * es);
    p->b = malloc(p->b_elems * es);
    p->c = malloc(p->c_elems * es);
    assert_non_null(p->a); assert_non_null(p->b); assert_non_null(p->c);
    hx_fill_wide(dt, p->a, p->a_elems, seed);
    hx_fill_wide(dt, p->b, p->b_elems, seed + 1);
    hx_fill_wide(dt, p->c, p->c_elems, seed + 2);
}

void problem_init(problem *p, binv_dtype dt, binv_transpose ta, binv_transpose tb, size_t m,
                  size_t n, size_t k, uint64_t seed) {
    problem_init_pad(p, dt, ta, tb, m, n, k, seed, 1);
}

void problem_free(problem *p) { free(p->a); free(p->b); free(p->c); }

/* Runs rows [row0, row0+m) of the problem on the device through `ctx`,
 * placing C at element offset c_off; returns the m x ldc output (storage). */
unsigned char *run_rows(const test_env *env, binv_context *ctx, const problem *p, size_t row0,
                        size_t m, size_t c_off, float alpha, float beta) {
    size_t es = hx_dtype_size(p->dtype);
    cl_mem a = test_buffer(env, p->a_elems * es, p->a);
    cl_mem b = test_buffer(env, p->b_elems * es, p->b);
    cl_mem c = test_buffer(env, (c_off + p->c_elems) * es, NULL);
    test_write(env, c, p->c_elems * es, p->c); /* C starts as the problem's C, shifted */
    if (c_off) {
        unsigned char *tmp = calloc(c_off + p->c_elems, es);
        memcpy(tmp + c_off * es, p->c + row0 * p->ldc * es, (p->m - row0) * p->ldc * es);
        test_write(env, c, (c_off + p->c_elems) * es, tmp);
        free(tmp);
    } else {
        test_write(env, c, (p->m - row0) * p->ldc * es, p->c + row0 * p->ldc * es);
    }
    size_t a_off = p->ta == BINV_NO_TRANS ? row0 * p->lda : row0;
    const hx_gemm g = problem_desc(p, m, alpha, beta);
    binv_status st = hx_gemm_binv(ctx, env->queue, &g, a, a_off, b, 0, c, c_off, NULL);
    if (st != BINV_SUCCESS) fprintf(stderr, "binv_gemm: %s\n", binv_context_last_error(ctx));
    assert_int_equal(st, BINV_SUCCESS);
    unsigned char *out = malloc((c_off + m * p->ldc) * es);
    test_read(env, c, (c_off + m * p->ldc) * es, out);
    memmove(out, out + c_off * es, m * p->ldc * es);
    clReleaseMemObject(a); clReleaseMemObject(b); clReleaseMemObject(c);
    return out;
}

/* Row i of x (ld elements per row) equals row j of y, bit for bit, over n. */
int rows_equal(const problem *p, const unsigned char *x, size_t i, const unsigned char *y,
               size_t j) {
    size_t es = hx_dtype_size(p->dtype);
    return memcmp(x + i * p->ldc * es, y + j * p->ldc * es, p->n * es) == 0;
}

/* |computed - exact| <= (k+4) u (|alpha| sum|a b| + |beta c|) + u_out |exact|
 * with u = 2^-24 (f32 accumulation: each of at most k+2 roundings of the
 * chunked sum, the alpha product and the beta fma) and u_out the storage
 * dtype's unit roundoff (2^-24, 2^-11, 2^-8). */
/* Whether every element of out is within the forward error bound of the
 * exact result; the first violation is described in msg. */
int within_bound(const problem *p, const unsigned char *out, float alpha, float beta,
                 const char *who, char *msg, size_t msg_size) {
    const double u = ldexp(1.0, -24);
    const double uo = p->dtype == BINV_DTYPE_F32 ? u : ldexp(1.0, p->dtype == BINV_DTYPE_F16 ? -11 : -8);
    const hx_gemm g = problem_desc(p, p->m, alpha, beta);
    double *exact = malloc(2 * p->n * sizeof *exact), *sa = exact + p->n;
    assert_non_null(exact);
    int ok = 1;
    for (size_t i = 0; i < p->m && ok; i++) {
        hx_gemm_ref_row(&g, p->a, p->b, p->c, i, exact, sa);
        for (size_t j = 0; j < p->n && ok; j++) {
            double c0 = beta != 0 ? hx_load(p->dtype, p->c, i * p->ldc + j) : 0.0;
            double tol = (p->k + 4) * u * (fabs(alpha) * sa[j] + fabs(beta * c0)) +
                         uo * fabs(exact[j]) + 1e-30;
            double got = hx_load(p->dtype, out, i * p->ldc + j);
            if (!(fabs(got - exact[j]) <= tol)) {
                snprintf(msg, msg_size,
                         "%s: C[%zu][%zu] = %.9g, exact %.9g, error %.3g > bound %.3g (k=%zu)", who,
                         i, j, got, exact[j], fabs(got - exact[j]), tol, p->k);
                ok = 0;
            }
        }
    }
    free(exact);
    return ok;
}

void check_accuracy(const problem *p, const unsigned char *out, float alpha, float beta,
                    const char *who) {
    char msg[256];
    if (!within_bound(p, out, alpha, beta, who, msg, sizeof msg)) fail_msg("%s", msg);
}

