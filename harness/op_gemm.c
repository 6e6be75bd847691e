/* gemm: C = alpha op(A) op(B) + beta C (binv_gemm; CLBlast's SGEMM/HGEMM). */
#include <math.h>

#include "harness.h"
#ifdef BINV_HAVE_CLBLAST
#include <clblast_c.h>
#endif

size_t hx_gemm_a_elems(const hx_gemm *g) { return (g->ta == BINV_NO_TRANS ? g->m : g->k) * g->lda; }
size_t hx_gemm_b_elems(const hx_gemm *g) { return (g->tb == BINV_NO_TRANS ? g->k : g->n) * g->ldb; }
size_t hx_gemm_c_elems(const hx_gemm *g) { return g->m * g->ldc; }

size_t hx_gemm_a_index(const hx_gemm *g, size_t i, size_t q) {
    return g->ta == BINV_NO_TRANS ? i * g->lda + q : q * g->lda + i;
}

size_t hx_gemm_b_index(const hx_gemm *g, size_t q, size_t j) {
    return g->tb == BINV_NO_TRANS ? q * g->ldb + j : j * g->ldb + q;
}

binv_status hx_gemm_binv(binv_context *ctx, cl_command_queue queue, const hx_gemm *g, cl_mem a,
                         size_t a_off, cl_mem b, size_t b_off, cl_mem c, size_t c_off,
                         cl_event *event) {
    return binv_gemm(ctx, queue, g->dt, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, a_off,
                     g->lda, b, b_off, g->ldb, g->beta, c, c_off, g->ldc, 0, NULL, event);
}

int hx_have_clblast(void) {
#ifdef BINV_HAVE_CLBLAST
    return 1;
#else
    return 0;
#endif
}

int hx_gemm_clblast(cl_command_queue *queue, const hx_gemm *g, cl_mem a, size_t a_off, cl_mem b,
                    size_t b_off, cl_mem c, size_t c_off) {
#ifdef BINV_HAVE_CLBLAST
    const CLBlastTranspose ta = g->ta == BINV_NO_TRANS ? CLBlastTransposeNo : CLBlastTransposeYes;
    const CLBlastTranspose tb = g->tb == BINV_NO_TRANS ? CLBlastTransposeNo : CLBlastTransposeYes;
    if (g->dt == BINV_DTYPE_F32)
        return (int)CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, a,
                                 a_off, g->lda, b, b_off, g->ldb, g->beta, c, c_off, g->ldc, queue,
                                 NULL);
    if (g->dt == BINV_DTYPE_F16) {
        cl_half alpha, beta; /* CLBlast HGEMM computes in half */
        hx_store(BINV_DTYPE_F16, &alpha, 0, g->alpha);
        hx_store(BINV_DTYPE_F16, &beta, 0, g->beta);
        return (int)CLBlastHgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, alpha, a, a_off,
                                 g->lda, b, b_off, g->ldb, beta, c, c_off, g->ldc, queue, NULL);
    }
#else
    (void)queue, (void)g, (void)a, (void)a_off, (void)b, (void)b_off, (void)c, (void)c_off;
#endif
    return -1;
}

void hx_clblast_clear_cache(void) {
#ifdef BINV_HAVE_CLBLAST
    CLBlastClearCache();
#endif
}

void hx_gemm_ref_row(const hx_gemm *g, const void *a, const void *b, const void *c, size_t i,
                     double *ref, double *mag) {
    for (size_t j = 0; j < g->n; j++) {
        double s = 0, t = 0;
        for (size_t q = 0; q < g->k; q++) {
            const double v = (double)hx_load(g->dt, a, hx_gemm_a_index(g, i, q)) *
                             (double)hx_load(g->dt, b, hx_gemm_b_index(g, q, j));
            s += v;
            t += fabs(v);
        }
        double exact = g->alpha * s;
        if (g->beta != 0) exact += g->beta * (double)hx_load(g->dt, c, i * g->ldc + j);
        ref[j] = exact;
        if (mag) mag[j] = t;
    }
}
