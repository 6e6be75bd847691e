/* binv_gemm: batch invariance, determinism, accuracy, portable bits (golden
 * hashes) and bad input.  Invariance is checked by comparing bits, never by
 * tolerance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "gemm_problem.h"
#ifdef BINV_HAVE_CLBLAST
#include <unistd.h>

#include "clblast_probe.h"
#endif

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
static const char *TNAME[] = {"N", "T"};

/* ---- invariance ----------------------------------------------------------- */

static void check_invariance(void **state, binv_dtype dt, binv_transpose ta, binv_transpose tb,
                             size_t n, size_t k, const size_t *ms, size_t nm, size_t ldb_pad) {
    test_env *env = *state;
    const size_t mmax = 257;
    problem p;
    problem_init_pad(&p, dt, ta, tb, mmax, n, k, 1000 + n * 7 + k, ldb_pad);
    /* The reference: all rows at once, automatic path. */
    unsigned char *full = run_rows(env, env->ctx, &p, 0, mmax, 0, 1.0f, 0.0f);
    /* stream runs where B is K-contiguous and aligned, else skinny. */
    binv_context *ctxs[6] = {env->ctx, env->forced[0], env->forced[1], env->forced[2],
                             env->forced[3], env->forced[4]};
    const char *cname[6] = {"auto", "skinny", "splitk", "tiled", "stream", "auto, 2 launches"};
    for (size_t mi = 0; mi < nm; mi++) {
        size_t m = ms[mi];
        size_t starts[3] = {0, mmax - m, (m * 37) % (mmax - m + 1)};
        for (int si = 0; si < 3; si++) {
            for (int ci = 0; ci < 6; ci++) {
                size_t c_off = (size_t)(si * 6 + ci);
                unsigned char *out = run_rows(env, ctxs[ci], &p, starts[si], m, c_off, 1.0f, 0.0f);
                for (size_t i = 0; i < m; i++) {
                    if (!rows_equal(&p, out, i, full, starts[si] + i)) {
                        fail_msg("%s %s%s n=%zu k=%zu: row %zu of a batch of m=%zu at position "
                                 "%zu (path %s) differs from the same row computed with m=%zu",
                                 hx_dtype_name(dt),
                                 TNAME[ta], TNAME[tb], n, k, starts[si] + i, m, i, cname[ci], mmax);
                    }
                }
                free(out);
            }
        }
    }
    free(full);
    problem_free(&p);
}

static void test_invariance_small(void **state) {
    static const size_t ms[] = {1, 2, 3, 7, 8, 31, 64, 257};
    static const size_t nk[][2] = {{1, 1}, {7, 13}, {13, 7}, {127, 1000}};
    for (int d = 0; d < 3; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
                    check_invariance(state, DTYPES[d], (binv_transpose)ta, (binv_transpose)tb,
                                     nk[s][0], nk[s][1], ms, sizeof ms / sizeof *ms, 1);
    /* 16-byte aligned weight rows (gemm_stream), k a multiple of the vector
     * width and not (2000 = 3*512 + 464: ragged last chunk). */
    for (int d = 0; d < 3; d++) {
        check_invariance(state, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 127, 1000, ms,
                         sizeof ms / sizeof *ms, 0);
        check_invariance(state, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 33, 2000, ms,
                         sizeof ms / sizeof *ms, 8);
    }
}

static void test_invariance_large(void **state) {
    /* Long K (9 chunks with a ragged tail) and wide N, LLM weight layout. */
    static const size_t ms[] = {1, 3, 64};
    for (int d = 0; d < 3; d++) {
        check_invariance(state, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 1000, 4097, ms, 3, 1);
        /* 16-byte aligned weight rows: the vector-load paths, with a ragged
         * last chunk (4100 = 8*512 + 4) and a tail of 4 inside one vector. */
        check_invariance(state, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 301, 4100, ms, 3, 4);
    }
    check_invariance(state, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4097, 127, ms, 3, 1);
}

/* Other rows of the batch may hold anything (NaN, Inf, other data): row r's
 * bits do not change. */
static void test_invariance_other_rows(void **state) {
    test_env *env = *state;
    for (int d = 0; d < 3; d++) {
        binv_dtype dt = DTYPES[d];
        size_t es = hx_dtype_size(dt);
        problem p;
        problem_init(&p, dt, BINV_NO_TRANS, BINV_TRANS, 64, 300, 1500, 77);
        unsigned char *ref = run_rows(env, env->ctx, &p, 0, 64, 0, 1.0f, 0.0f);
        const size_t r = 17;
        /* Overwrite every other row of A with new data and some NaN/Inf. */
        hx_fill_wide(dt, p.a, r * p.lda, 999);
        hx_fill_wide(dt, p.a + (r + 1) * p.lda * es, (63 - r) * p.lda, 998);
        float specials[] = {NAN, INFINITY, -INFINITY, 0.0f};
        for (int s = 0; s < 4; s++) hx_store(dt, p.a, (size_t)s * p.lda + 5, specials[s]);
        for (int ci = 0; ci < 6; ci++) {
            binv_context *c = ci == 0 ? env->ctx : env->forced[ci - 1];
            unsigned char *out = run_rows(env, c, &p, 0, 64, 0, 1.0f, 0.0f);
            assert_true(rows_equal(&p, out, r, ref, r));
            free(out);
        }
        free(ref);
        problem_free(&p);
    }
}

/* ---- determinism ---------------------------------------------------------- */

static void test_determinism(void **state) {
    test_env *env = *state;
    for (int d = 0; d < 3; d++) {
        problem p;
        problem_init(&p, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 33, 130, 1100, 5);
        size_t es = hx_dtype_size(p.dtype);
        cl_mem a = test_buffer(env, p.a_elems * es, p.a);
        cl_mem b = test_buffer(env, p.b_elems * es, p.b);
        cl_mem c = test_buffer(env, p.c_elems * es, NULL);
        unsigned char *first = malloc(p.c_elems * es), *now = malloc(p.c_elems * es);
        for (int rep = 0; rep < 100; rep++) {
            binv_context *ctx = rep % 2 ? env->ctx : env->forced[(rep / 2) % 5];
            assert_int_equal(binv_gemm(ctx, env->queue, p.dtype, p.ta, p.tb, p.m, p.n, p.k, 1.0f,
                                       a, 0, p.lda, b, 0, p.ldb, 0.0f, c, 0, p.ldc, 0, NULL,
                                       NULL),
                             BINV_SUCCESS);
            test_read(env, c, p.c_elems * es, rep ? now : first);
            if (rep) assert_memory_equal(first, now, p.c_elems * es);
        }
        free(first); free(now);
        clReleaseMemObject(a); clReleaseMemObject(b); clReleaseMemObject(c);
        problem_free(&p);
    }
}

/* ---- accuracy --------------------------------------------------------------- */

static void test_accuracy(void **state) {
    test_env *env = *state;
    /* The last two shapes pad rows to 16 bytes: the vector-load paths. */
    static const size_t shapes[][4] = {{5, 7, 13, 1}, {33, 65, 1100, 1}, {70, 129, 513, 1},
                                       {2, 300, 4097, 1}, {3, 100, 1032, 8}, {150, 70, 1032, 8}};
    for (int d = 0; d < 3; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t s = 0; s < 6; s++) {
                    problem p;
                    problem_init_pad(&p, DTYPES[d], (binv_transpose)ta, (binv_transpose)tb,
                                     shapes[s][0], shapes[s][1], shapes[s][2], 42 + s, shapes[s][3]);
                    for (int which = 0; which < 2; which++) {
                        binv_context *c = which ? env->adaptive : env->ctx;
                        unsigned char *out = run_rows(env, c, &p, 0, p.m, 0, 1.5f, -0.75f);
                        check_accuracy(&p, out, 1.5f, -0.75f, which ? "adaptive" : "invariant");
                        free(out);
                    }
                    problem_free(&p);
                }
}

/* Powers of two: every product and partial sum is an exact small integer, so
 * the result is exact whatever the order. */
static void test_exact_pow2(void **state) {
    test_env *env = *state;
    static const size_t kk[] = {4097, 100, 16}; /* sums stay exact in the output dtype */
    for (int d = 0; d < 3; d++) {
        problem p;
        problem_init(&p, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, 9, 70, kk[d], 3);
        hx_fill_pow2(p.dtype, p.a, p.a_elems, 11);
        hx_fill_pow2(p.dtype, p.b, p.b_elems, 12);
        for (int ci = 0; ci < 5; ci++) {
            binv_context *c = ci < 3 ? env->forced[ci] : ci == 3 ? env->ctx : env->adaptive;
            unsigned char *out = run_rows(env, c, &p, 0, p.m, 0, 1.0f, 0.0f);
            const hx_gemm g = problem_desc(&p, p.m, 1.0f, 0.0f);
            double *exact = malloc(p.n * sizeof *exact);
            assert_non_null(exact);
            for (size_t i = 0; i < p.m; i++) {
                hx_gemm_ref_row(&g, p.a, p.b, NULL, i, exact, NULL);
                for (size_t j = 0; j < p.n; j++)
                    assert_true(hx_load(p.dtype, out, i * p.ldc + j) == (float)exact[j]);
            }
            free(exact);
            free(out);
        }
        problem_free(&p);
    }
}

/* BLAS edge conventions: beta == 0 does not read C (NaN in C vanishes);
 * k == 0 gives C = beta*C; m == 0 / n == 0 touch nothing. */
static void test_blas_conventions(void **state) {
    test_env *env = *state;
    problem p;
    problem_init(&p, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 4, 5, 6, 8);
    for (size_t i = 0; i < p.c_elems; i++) ((float *)p.c)[i] = NAN;
    float *out = (float *)run_rows(env, env->ctx, &p, 0, 4, 0, 1.0f, 0.0f);
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 5; j++) assert_false(isnan(out[i * p.ldc + j]));
    free(out);
    /* k == 0 */
    for (size_t i = 0; i < p.c_elems; i++) ((float *)p.c)[i] = (float)i + 0.25f;
    cl_mem a = test_buffer(env, 64, NULL), b = test_buffer(env, 64, NULL);
    cl_mem c = test_buffer(env, p.c_elems * 4, p.c);
    cl_event ev = NULL;
    assert_int_equal(binv_gemm(env->ctx, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS,
                               4, 5, 0, 3.0f, a, 0, 1, b, 0, 5, 2.0f, c, 0, p.ldc, 0, NULL, &ev),
                     BINV_SUCCESS);
    assert_non_null(ev);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    float got[64];
    test_read(env, c, p.c_elems * 4, got);
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 5; j++)
            assert_true(got[i * p.ldc + j] == 2.0f * ((float)(i * p.ldc + j) + 0.25f));
    /* m == 0: nothing written, event still returned. */
    assert_int_equal(binv_gemm(env->ctx, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS,
                               0, 5, 6, 1.0f, a, 0, 6, b, 0, 5, 0.0f, c, 0, p.ldc, 0, NULL, &ev),
                     BINV_SUCCESS);
    assert_non_null(ev);
    clReleaseEvent(ev);
    clReleaseMemObject(a); clReleaseMemObject(b); clReleaseMemObject(c);
    problem_free(&p);
}

/* ---- CLBlast -------------------------------------------------------------- */

#ifdef BINV_HAVE_CLBLAST
/* CLBlast's SGEMM of problem p (f32) in clblast_probe, a process of its own
 * under a deadline (tests/clblast_probe.c says why).  Returns C (m * ldc
 * floats, malloc'd), or NULL with the reason in why. */
static float *clblast_in_child(const problem *p, float alpha, float beta, char *why,
                               size_t why_size) {
    char in[64], out[64];
    snprintf(in, sizeof in, "clblast-probe-%ld.in", (long)getpid());
    snprintf(out, sizeof out, "clblast-probe-%ld.out", (long)getpid());
    const clblast_probe_header h = {CLBLAST_PROBE_MAGIC, p->ta != BINV_NO_TRANS,
                                    p->tb != BINV_NO_TRANS, 0, p->m, p->n, p->k, p->lda, p->ldb,
                                    p->ldc, p->a_elems, p->b_elems, p->c_elems, alpha, beta};
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(&h, sizeof h, 1, f), 1);
    assert_int_equal(fwrite(p->a, 4, p->a_elems, f), p->a_elems);
    assert_int_equal(fwrite(p->b, 4, p->b_elems, f), p->b_elems);
    assert_int_equal(fwrite(p->c, 4, p->c_elems, f), p->c_elems);
    assert_int_equal(fclose(f), 0);
    remove(out);
    const char *exe = getenv("BINV_CLBLAST_PROBE");
    if (!exe || !*exe) exe = BINV_CLBLAST_PROBE_EXE;
    char *const argv[] = {(char *)exe, in, out, NULL};
    /* CLBlast compiles its kernels on first use: minutes on a slow CPU
     * device, so the deadline is generous; BINV_CLBLAST_TIMEOUT overrides. */
    const char *t = getenv("BINV_CLBLAST_TIMEOUT");
    char how[256];
    float *c = NULL;
    if (hx_run_deadline(argv, t && atol(t) > 0 ? atol(t) : 240, how, sizeof how) != 0) {
        snprintf(why, why_size, "CLBlast's SGEMM (clblast_probe): %s", how);
    } else {
        c = malloc(p->c_elems * 4);
        assert_non_null(c);
        f = fopen(out, "rb");
        assert_non_null(f);
        assert_int_equal(fread(c, 4, p->c_elems, f), p->c_elems);
        fclose(f);
    }
    remove(in);
    remove(out);
    return c;
}
#endif

/* The library against CLBlast on the same problems: both must be within the
 * forward error bound of the exact result.  The library's check is an
 * assertion whatever CLBlast does; a CLBlast that fails, hangs or is wrong on
 * this device is reported and the comparison skipped (a broken baseline is
 * not the library's failure). */
static void test_vs_clblast(void **state) {
#ifdef BINV_HAVE_CLBLAST
    test_env *env = *state;
    char why[512] = "";
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            problem p;
            problem_init(&p, BINV_DTYPE_F32, (binv_transpose)ta, (binv_transpose)tb, 37, 91, 1030, 9);
            unsigned char *ours = run_rows(env, env->ctx, &p, 0, p.m, 0, 1.0f, 0.5f);
            check_accuracy(&p, ours, 1.0f, 0.5f, "binv");
            free(ours);
            if (!why[0]) {
                float *theirs = clblast_in_child(&p, 1.0f, 0.5f, why, sizeof why);
                if (theirs)
                    within_bound(&p, (unsigned char *)theirs, 1.0f, 0.5f, "CLBlast is wrong", why,
                                 sizeof why);
                free(theirs);
            }
            problem_free(&p);
        }
    if (why[0]) {
        printf("# CLBlast baseline broken on '%s', comparison skipped: %s\n", env->device_name, why);
        skip();
    }
    char ext[4096] = "";
    clGetDeviceInfo(env->device, CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
    if (!strstr(ext, "cl_khr_fp16"))
        printf("# CLBlast HGEMM comparison skipped: '%s' has no cl_khr_fp16\n", env->device_name);
#else
    skip();
#endif
}

/* ---- portable bits ---------------------------------------------------------- */

static void test_golden(void **state) {
    test_env *env = *state;
    static const size_t shapes[][3] = {{19, 70, 1100}, {2, 300, 2049}, {130, 3, 600}};
    int bad = 0;
    for (int d = 0; d < 3; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int s = 0; s < 3; s++) {
                    problem p;
                    problem_init(&p, DTYPES[d], (binv_transpose)ta, (binv_transpose)tb,
                                 shapes[s][0], shapes[s][1], shapes[s][2], 2024);
                    unsigned char *out = run_rows(env, env->ctx, &p, 0, p.m, 0, 1.25f, 0.5f);
                    char hex[65], name[128];
                    test_sha256_hex(out, p.c_elems * hx_dtype_size(p.dtype), hex);
                    snprintf(name, sizeof name, "gemm_%s_%s%s_%zux%zux%zu",
                             hx_dtype_name(DTYPES[d]), TNAME[ta], TNAME[tb], p.m,
                             p.n, p.k);
                    if (!test_golden_check("gemm.txt", name, hex)) bad++;
                    free(out);
                    problem_free(&p);
                }
    if (bad) fail_msg("%d golden hashes differ on '%s'", bad, env->device_name);
}

/* ---- bad input ---------------------------------------------------------- */

/* binv_gemm with alpha 1, beta 0 and the queue last, for a table of calls. */
static binv_status bad_call(binv_context *ctx, cl_event *ev, binv_dtype dt, binv_transpose ta,
                            binv_transpose tb, size_t m, size_t n, size_t k, cl_mem a, size_t ao,
                            size_t lda, cl_mem b, size_t bo, size_t ldb, cl_mem c, size_t co,
                            size_t ldc, cl_uint ne, const cl_event *wl, cl_command_queue q) {
    return binv_gemm(ctx, q, dt, ta, tb, m, n, k, 1.0f, a, ao, lda, b, bo, ldb, 0.0f, c, co, ldc,
                     ne, wl, ev);
}

static void test_bad_input(void **state) {
    test_env *env = *state;
    binv_context *ctx = env->ctx;
    const size_t m = 4, n = 5, k = 6;
    float host_c[64];
    for (int i = 0; i < 64; i++) host_c[i] = 1234.5f + (float)i;
    cl_mem a = test_buffer(env, m * k * 4, NULL), b = test_buffer(env, k * n * 4, NULL);
    cl_mem c = test_buffer(env, m * n * 4, host_c);
    cl_mem small = test_buffer(env, 8, NULL);
    cl_int err;
    cl_context other = clCreateContext(NULL, 1, &env->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, 4096, NULL, &err);
    cl_command_queue foreign_q = clCreateCommandQueue(other, env->device, 0, &err);
    cl_event ev = (cl_event)0x1;
#define GEMM(...) bad_call(ctx, &ev, __VA_ARGS__)
#define OK_ARGS BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, m, n, k
    struct {
        binv_status got, expect;
        const char *what;
    } cases[] = {
        {GEMM(OK_ARGS, NULL, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_ARGUMENT, "A NULL"},
        {GEMM(OK_ARGS, a, 0, k, NULL, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_ARGUMENT, "B NULL"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, NULL, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_ARGUMENT, "C NULL"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, c, 0, n, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT, "queue NULL"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, c, 0, n, 1, NULL, env->queue), BINV_ERROR_INVALID_ARGUMENT, "wait list NULL"},
        {GEMM(OK_ARGS, a, 0, k - 1, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_LEADING_DIMENSION, "lda < k"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n - 1, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldb < n"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, c, 0, n - 1, 0, NULL, env->queue), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldc < n"},
        {GEMM(BINV_DTYPE_F32, BINV_TRANS, BINV_NO_TRANS, m, n, k, a, 0, m - 1, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_LEADING_DIMENSION, "lda < m (A transposed)"},
        {GEMM(OK_ARGS, a, 1, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_BUFFER_TOO_SMALL, "A view past CL_MEM_SIZE"},
        {GEMM(OK_ARGS, a, 0, k, small, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_BUFFER_TOO_SMALL, "B too small"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, c, 1, n, 0, NULL, env->queue), BINV_ERROR_BUFFER_TOO_SMALL, "C view past CL_MEM_SIZE"},
        {GEMM(OK_ARGS, a, SIZE_MAX - 2, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_DIMENSION, "offset overflow"},
        {GEMM(BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, m, n, k, a, 0, SIZE_MAX / 2, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_DIMENSION, "lda*rows overflow"},
        {GEMM(BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, (size_t)1 << 40, n, k, a, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_DIMENSION, "m >= 2^31"},
        {GEMM((binv_dtype)7, BINV_NO_TRANS, BINV_NO_TRANS, m, n, k, a, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_UNSUPPORTED_DTYPE, "dtype 7"},
        {GEMM(BINV_DTYPE_F32, (binv_transpose)2, BINV_NO_TRANS, m, n, k, a, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_ENUM, "trans_a 2"},
        {GEMM(BINV_DTYPE_F32, BINV_NO_TRANS, (binv_transpose)-1, m, n, k, a, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_INVALID_ENUM, "trans_b -1"},
        {GEMM(OK_ARGS, foreign, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_CONTEXT_MISMATCH, "A of another context"},
        {GEMM(OK_ARGS, a, 0, k, b, 0, n, c, 0, n, 0, NULL, foreign_q), BINV_ERROR_CONTEXT_MISMATCH, "queue of another context"},
        {GEMM(OK_ARGS, c, 0, k, b, 0, n, c, 0, n, 0, NULL, env->queue), BINV_ERROR_BUFFER_TOO_SMALL, "C as A: view too small"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].got != cases[i].expect)
            fail_msg("%s: got %d (%s), expected %d", cases[i].what, cases[i].got,
                     binv_status_string(cases[i].got), cases[i].expect);
        assert_true(strlen(binv_context_last_error(ctx)) > 0 || cases[i].got == BINV_SUCCESS);
    }
    /* Each failing call's message is about that call. */
    GEMM(OK_ARGS, a, 0, k - 1, b, 0, n, c, 0, n, 0, NULL, env->queue);
    assert_non_null(strstr(binv_context_last_error(ctx), "lda"));
    assert_true(ev == NULL); /* event cleared on failure */
    /* Aliasing: C overlapping A in one buffer. */
    cl_mem big = test_buffer(env, 4096, NULL);
    assert_int_equal(GEMM(OK_ARGS, big, 0, k, b, 0, n, big, 10, n, 0, NULL, env->queue), BINV_ERROR_ALIASING);
    assert_int_equal(GEMM(OK_ARGS, big, 0, k, b, 0, n, big, m * k, n, 0, NULL, env->queue), BINV_SUCCESS);
    if (ev) clReleaseEvent(ev);
    /* NULL context. */
    assert_int_equal(binv_gemm(NULL, env->queue, BINV_DTYPE_F32, 0, 0, m, n, k, 1, a, 0, k, b, 0,
                               n, 0, c, 0, n, 0, NULL, NULL),
                     BINV_ERROR_INVALID_ARGUMENT);
    assert_non_null(binv_context_last_error(NULL));
    /* C untouched by every failing call. */
    float now[64];
    test_read(env, c, m * n * 4, now);
    assert_memory_equal(now, host_c, m * n * 4);
    clReleaseMemObject(a); clReleaseMemObject(b); clReleaseMemObject(c); clReleaseMemObject(small);
    clReleaseMemObject(big); clReleaseMemObject(foreign);
    clReleaseCommandQueue(foreign_q); clReleaseContext(other);
#undef GEMM
#undef OK_ARGS
}

/* ---- threads -------------------------------------------------------------- */

typedef struct thread_job {
    test_env *env;
    cl_command_queue queue;
    const problem *p;
    unsigned char *out;
    int status;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    const problem *p = j->p;
    test_env *env = j->env;
    cl_int err;
    cl_mem a = clCreateBuffer(env->context, CL_MEM_COPY_HOST_PTR, p->a_elems * 4, p->a, &err);
    cl_mem b = clCreateBuffer(env->context, CL_MEM_COPY_HOST_PTR, p->b_elems * 4, p->b, &err);
    cl_mem c = clCreateBuffer(env->context, CL_MEM_READ_WRITE, p->c_elems * 4, NULL, &err);
    j->status = 0;
    for (int rep = 0; rep < 10 && j->status == 0; rep++) {
        j->status = binv_gemm(env->ctx, j->queue, BINV_DTYPE_F32, p->ta, p->tb, p->m, p->n, p->k,
                              1.0f, a, 0, p->lda, b, 0, p->ldb, 0.0f, c, 0, p->ldc, 0, NULL, NULL);
    }
    if (j->status == 0)
        j->status = clEnqueueReadBuffer(j->queue, c, CL_TRUE, 0, p->c_elems * 4, j->out, 0, NULL,
                                        NULL);
    clReleaseMemObject(a); clReleaseMemObject(b); clReleaseMemObject(c);
    return NULL;
}

/* Several host threads, one binv_context, own and shared queues: every
 * thread gets the single-threaded bits (split-K workspaces are per queue). */
static void test_threads(void **state) {
    test_env *env = *state;
    problem p;
    problem_init(&p, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_TRANS, 3, 200, 1500, 31);
    unsigned char *ref = run_rows(env, env->ctx, &p, 0, p.m, 0, 1.0f, 0.0f);
    enum { NTH = 4 };
    pthread_t th[NTH];
    thread_job jobs[NTH];
    cl_int err;
    cl_command_queue own = clCreateCommandQueue(env->context, env->device, 0, &err);
    for (int t = 0; t < NTH; t++) {
        jobs[t] = (thread_job){env, t < 2 ? own : env->queue, &p, malloc(p.c_elems * 4), -1};
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, &jobs[t]), 0);
    }
    for (int t = 0; t < NTH; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].status, 0);
        for (size_t i = 0; i < p.m; i++) assert_true(rows_equal(&p, jobs[t].out, i, ref, i));
        free(jobs[t].out);
    }
    clReleaseCommandQueue(own);
    free(ref);
    problem_free(&p);
}

/* gemm_tiled's variants give its bits: the lean kernel for K-contiguous
 * operands (gemm_tiled_nt) against gemm_tiled (BINV_GEMM_NT=0), the GPU's
 * 64 x 128 tiles, and the running totals in the workspace (BINV_GEMM_TGLOB=1,
 * the GPU default, which the CPU otherwise never runs).  m and n are not
 * multiples of the tiles (clamped rows), k = 1000 ends in a partial step, and
 * several chunks are added. */
static void test_tiled_variants(void **state) {
    test_env *env = *state;
    static const char *const vars[][2] = {{"BINV_GEMM_NT", "0"},
                                          {"BINV_GEMM_TILE", "64,128,16,8,8"},
                                          {"BINV_GEMM_TGLOB", "1"}};
    enum { NV = sizeof vars / sizeof *vars };
    static const binv_dtype dts[] = {BINV_DTYPE_F32, BINV_DTYPE_BF16};
    binv_context *tuned[NV];
    for (size_t v = 0; v < NV; v++) {
        const char *const knobs[2][2] = {{"BINV_GEMM_PATH", "tiled"}, {vars[v][0], vars[v][1]}};
        tuned[v] = test_ctx_tuned(env, BINV_SCHEDULE_INVARIANT, BINV_PATH_PORTABLE, 2, knobs);
        assert_non_null(tuned[v]);
    }
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        problem p;
        problem_init_pad(&p, dts[d], BINV_NO_TRANS, BINV_TRANS, 150, 200, 1000, 4242 + d, 0);
        const size_t bytes = p.m * p.ldc * hx_dtype_size(p.dtype);
        unsigned char *ref = run_rows(env, env->forced[2], &p, 0, p.m, 0, 1.0f, 0.0f);
        check_accuracy(&p, ref, 1.0f, 0.0f, "tiled");
        for (size_t v = 0; v < NV; v++) {
            unsigned char *out = run_rows(env, tuned[v], &p, 0, p.m, 0, 1.0f, 0.0f);
            if (memcmp(out, ref, bytes))
                fail_msg("%s tiled: %s=%s changed the bits", hx_dtype_name(p.dtype), vars[v][0],
                         vars[v][1]);
            free(out);
        }
        free(ref);
        problem_free(&p);
    }
    for (size_t v = 0; v < NV; v++) binv_context_destroy(tuned[v]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_blas_conventions),
        cmocka_unit_test(test_exact_pow2),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_vs_clblast),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_invariance_small),
        cmocka_unit_test(test_invariance_other_rows),
        cmocka_unit_test(test_invariance_large),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_tiled_variants),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("gemm", tests, test_env_setup, test_env_teardown);
}
