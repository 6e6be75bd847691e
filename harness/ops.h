/* One description per op (harness/op_*.c), shared by tests, binv-bench and
 * binv-study: buffer sizes, the binv call, the CLBlast call where one exists
 * and the double-precision reference.  Included by harness.h. */
#ifndef BINV_HARNESS_OPS_H
#define BINV_HARNESS_OPS_H

#include <stddef.h>

#include "binv/binv.h"

/* ---- gemm (harness/op_gemm.c): C = alpha op(A) op(B) + beta C ------------- */

typedef struct hx_gemm {
    binv_dtype dt;
    binv_transpose ta, tb;
    size_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
} hx_gemm;

/* Elements of the row-major storage of A, B and C (leading dimensions included). */
size_t hx_gemm_a_elems(const hx_gemm *g);
size_t hx_gemm_b_elems(const hx_gemm *g);
size_t hx_gemm_c_elems(const hx_gemm *g);
/* Element index of op(A)[i][q] and op(B)[q][j]. */
size_t hx_gemm_a_index(const hx_gemm *g, size_t i, size_t q);
size_t hx_gemm_b_index(const hx_gemm *g, size_t q, size_t j);
/* binv_gemm of g (offsets in elements; no wait list). */
binv_status hx_gemm_binv(binv_context *ctx, cl_command_queue queue, const hx_gemm *g, cl_mem a,
                         size_t a_off, cl_mem b, size_t b_off, cl_mem c, size_t c_off,
                         cl_event *event);
/* 1 when CLBlast is compiled into the harness (BINV_HAVE_CLBLAST). */
int hx_have_clblast(void);
/* CLBlast's SGEMM (f32) or HGEMM (f16, alpha and beta rounded to half) of g,
 * row-major.  Returns CLBlast's status (0: success); -1 for bf16 or without
 * CLBlast. */
int hx_gemm_clblast(cl_command_queue *queue, const hx_gemm *g, cl_mem a, size_t a_off, cl_mem b,
                    size_t b_off, cl_mem c, size_t c_off);
/* Drops the programs CLBlast cached (before its OpenCL context goes); a
 * no-op without CLBlast. */
void hx_clblast_clear_cache(void);
/* Row i of the exact result in double over the stored values of a and b
 * (storage of g->dt): ref[j] = alpha * sum_q a(i,q) b(q,j) (+ beta c(i,j)
 * when beta != 0; c may be NULL when beta == 0) and, if mag is not NULL,
 * mag[j] = sum_q |a(i,q) b(q,j)|, the term magnitudes an error is measured
 * against. */
void hx_gemm_ref_row(const hx_gemm *g, const void *a, const void *b, const void *c, size_t i,
                     double *ref, double *mag);

/* ---- rows (harness/op_rows.c): the row reductions -------------------------- */

typedef enum hx_rows_op {
    HX_RMSNORM, HX_SOFTMAX, HX_LOG_SOFTMAX, HX_LAYERNORM, HX_ADD_RMSNORM, HX_ROW_SUM, HX_ROW_MEAN,
    HX_SELECTED_LOG_SOFTMAX,
    HX_ROWS_COUNT
} hx_rows_op;

/* Name (as in binv.h without binv_) and traffic per call: `reads` + `writes`
 * matrices of rows x cols (add_rmsnorm reads x and the residual and writes x
 * and y), `vectors` parameter vectors of cols read once, `buffers` distinct
 * rows x cols buffers a call needs; f32_out: one f32 per row (row_sum,
 * row_mean, selected_log_softmax) instead of a matrix.  selected_log_softmax
 * also reads one cl_uint id per row (hx_rows_selects). */
typedef struct hx_rows_info {
    const char *name;
    int reads, writes, buffers, vectors, f32_out;
} hx_rows_info;
extern const hx_rows_info hx_rows_ops[HX_ROWS_COUNT];
/* 1 for the ops that take a cl_uint id per row (hx_rows.ids). */
int hx_rows_selects(hx_rows_op op);
/* The op named by the first len characters of s, or -1. */
int hx_rows_find(const char *s, size_t len);
/* Bytes a call moves by the convention above. */
double hx_rows_traffic(hx_rows_op op, binv_dtype dt, size_t rows, size_t cols);

/* One call's arguments (element offsets; w: weight or gamma, b: beta, r: the
 * residual; y is the float output for row_sum / row_mean /
 * selected_log_softmax, y_off its first element; ids: selected_log_softmax's
 * cl_uint column per row, from element ids_off). */
typedef struct hx_rows {
    hx_rows_op op;
    binv_dtype dt;
    size_t rows, cols;
    float eps;
    cl_mem x; size_t x_off, ldx;
    cl_mem r; size_t r_off, ldr;
    cl_mem w; size_t w_off;
    cl_mem b; size_t b_off;
    cl_mem y; size_t y_off, ldy;
    cl_mem ids; size_t ids_off;
} hx_rows;
binv_status hx_rows_binv(binv_context *ctx, cl_command_queue queue, const hx_rows *p,
                         cl_event *event);
/* Double-precision output of one row: x and r (add_rmsnorm: x + r rounded
 * to the dtype, as the library stores it) are cols storage words, w and b
 * the vectors (unused ones may be NULL).  Writes ref[cols] (row_sum /
 * row_mean: ref[0]; selected_log_softmax: the whole log-softmax row, the
 * caller picks its id); work holds cols doubles.  Returns the scale an error
 * is measured against: max |ref| (row_sum: sum |x|; row_mean: its mean). */
double hx_rows_ref(hx_rows_op op, binv_dtype dt, size_t cols, double eps, const void *x,
                   const void *r, const void *w, const void *b, double *ref, double *work);
/* sum of x[0..n) in double with Neumaier compensation: a reference against
 * which f32 sums in any order can be judged. */
double hx_sum_ref(const float *x, size_t n);
/* The chunk width a BINV_SCHEDULE_ADAPTIVE context uses for `rows` rows of
 * `cols` values on a device of `cus` compute units: the rule written down in
 * docs/schedules.md ("Adaptive"), copied here only so that reports can say
 * which widths the measured bits came from.  The invariant width is
 * binv_rows_chunk_size(), whatever rows is. */
size_t hx_rows_adaptive_width(size_t rows, size_t cols, size_t cus);

/* ---- attention and rope (harness/op_attention.c) ---------------------------- */

/* Causal attention FLOPs of `seqs` sequences of ctx keys with the last qlen
 * tokens new: 2 per multiply-add of QK^T and PV over the causal pairs. */
double hx_attention_flops(size_t heads, size_t head_dim, size_t seqs, size_t ctx, size_t qlen);
/* A page table of `pages` entries: 0 .. pages-1 shuffled (Fisher-Yates with
 * hx_rng_next from *seed), so that a sequence's pages are not contiguous. */
void hx_attention_shuffled_pages(cl_uint *table, size_t pages, uint64_t *seed);
/* o = softmax(scale q . K[0..nkeys)) V in double over the stored values:
 * q's head_dim values start at element q_at of q; key j's at element
 * kv_at + j * kv_ld of k and of v.  work holds nkeys doubles. */
void hx_attention_ref(binv_dtype dt, size_t head_dim, double scale, const void *q, size_t q_at,
                      const void *k, const void *v, size_t kv_at, size_t kv_ld, size_t nkeys,
                      double *out, double *work);
/* The rotation of rope's pair (x0, x1) by angle a, in double. */
void hx_rope_ref(double x0, double x1, double a, double *y0, double *y1);

/* ---- activation (harness/op_activation.c) ----------------------------------- */

/* binv_swiglu over rows x cols matrices with row strides ld (all three alike). */
binv_status hx_swiglu_binv(binv_context *ctx, cl_command_queue queue, binv_dtype dt, size_t rows,
                           size_t cols, cl_mem gate, cl_mem up, cl_mem y, size_t ld,
                           cl_event *event);
/* silu(g) * u = g / (1 + exp(-g)) * u in double. */
double hx_swiglu_ref(double g, double u);

#endif
