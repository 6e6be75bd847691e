/* GEMM problems on the host shared by tests/test_gemm.c and
 * tests/test_gemm_native.c (tests/gemm_problem.c).  Include after
 * common.h's prerequisites. */
#ifndef BINV_TESTS_GEMM_PROBLEM_H
#define BINV_TESTS_GEMM_PROBLEM_H

#include "common.h"

/* A GEMM problem held on the host: op(A) is m x k, op(B) k x n, both stored
 * with padding in their leading dimensions so that strides are not trivial. */
typedef struct problem {
    binv_dtype dtype;
    binv_transpose ta, tb;
    size_t m, n, k, lda, ldb, ldc;
    size_t a_elems, b_elems, c_elems;
    unsigned char *a, *b, *c; /* storage words */
} problem;

/* ldb_pad: elements of padding per row of B (1 makes rows misaligned, and A's
 * 3; 0 or a multiple of 8 with k a multiple of 4 pads A and B alike so that
 * the vector-load paths run).  Wide-range data from seed. */
void problem_init_pad(problem *p, binv_dtype dt, binv_transpose ta, binv_transpose tb, size_t m,
                      size_t n, size_t k, uint64_t seed, size_t ldb_pad);
/* problem_init_pad with ldb_pad = 1. */
void problem_init(problem *p, binv_dtype dt, binv_transpose ta, binv_transpose tb, size_t m,
                  size_t n, size_t k, uint64_t seed);
void problem_free(problem *p);
/* The harness's description of p's GEMM on m rows (harness/op_gemm.c). */
hx_gemm problem_desc(const problem *p, size_t m, float alpha, float beta);
/* Runs rows [row0, row0+m) of the problem on the device through `ctx`,
 * placing C at element offset c_off; returns the m x ldc output (storage). */
unsigned char *run_rows(const test_env *env, binv_context *ctx, const problem *p, size_t row0,
                        size_t m, size_t c_off, float alpha, float beta);
/* Row i of x equals row j of y (ldc elements per row), bit for bit, over n. */
int rows_equal(const problem *p, const unsigned char *x, size_t i, const unsigned char *y,
               size_t j);
/* Whether every element of out is within the forward error bound of the
 * exact result (tests/gemm_problem.c states it); the first violation is
 * described in msg.  check_accuracy fails the test on a violation. */
int within_bound(const problem *p, const unsigned char *out, float alpha, float beta,
                 const char *who, char *msg, size_t msg_size);
void check_accuracy(const problem *p, const unsigned char *out, float alpha, float beta,
                    const char *who);

#endif
