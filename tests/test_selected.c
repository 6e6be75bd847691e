/* binv_selected_log_softmax: bitwise equal to binv_log_softmax followed by a
 * host gather (f32; f16/bf16 once rounded to the dtype) on every kernel path
 * and schedule, invariant to the row's position and the batch, NaN for an id
 * out of range, and argument validation (status, message, nothing written). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"
#include "reliability.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

/* The contexts every bitwise check runs through: the automatic choice and
 * each BINV_ROWS_PATH forced, under both schedules (the adaptive one is not
 * invariant, but log_softmax and the selected op must still agree on it). */
enum { NCTX = 6 };
typedef struct sel_ctxs {
    binv_context *c[NCTX];
    const char *name[NCTX];
    int invariant[NCTX];
} sel_ctxs;

static void ctxs_make(const test_env *env, sel_ctxs *s) {
    static const char *const fused[][2] = {{"BINV_ROWS_PATH", "fused"}};
    static const char *const split[][2] = {{"BINV_ROWS_PATH", "split"}};
    *s = (sel_ctxs){{env->ctx, env->rows_forced[0], env->rows_forced[1], env->adaptive,
                     test_ctx_tuned(env, BINV_SCHEDULE_ADAPTIVE, BINV_PATH_PORTABLE, 1, fused),
                     test_ctx_tuned(env, BINV_SCHEDULE_ADAPTIVE, BINV_PATH_PORTABLE, 1, split)},
                    {"invariant", "invariant+fused", "invariant+split", "adaptive",
                     "adaptive+fused", "adaptive+split"},
                    {1, 1, 1, 0, 0, 0}};
    assert_non_null(s->c[4]);
    assert_non_null(s->c[5]);
}

static void ctxs_free(sel_ctxs *s) {
    binv_context_destroy(s->c[4]);
    binv_context_destroy(s->c[5]);
}

/* rows x cols of dt with row stride ld, wide random values; ids in [0, cols)
 * with the first and last columns among them. */
typedef struct sel_prob {
    binv_dtype dt;
    size_t rows, cols, ld;
    unsigned char *x;
    cl_uint *ids;
} sel_prob;

static void prob_init(sel_prob *p, binv_dtype dt, size_t rows, size_t cols, uint64_t seed) {
    *p = (sel_prob){dt, rows, cols, cols + 5, NULL, NULL};
    p->x = malloc(rows * p->ld * hx_dtype_size(dt));
    p->ids = malloc(rows * sizeof *p->ids);
    assert_true(p->x && p->ids);
    hx_fill_wide(dt, p->x, rows * p->ld, seed);
    for (size_t i = 0; i < rows; i++) p->ids[i] = (cl_uint)(hx_rng_next(&seed) % cols);
    p->ids[0] = 0;
    if (rows > 1) p->ids[rows - 1] = (cl_uint)(cols - 1);
}

static void prob_free(sel_prob *p) {
    free(p->x);
    free(p->ids);
}

/* What out holds before a call: no log-probability (those are <= 0) and no
 * NaN, so that a value not written shows, and a NaN is the kernel's. */
#define SENTINEL 12345.0f

/* binv_selected_log_softmax of rows [row0, row0 + rows) of p through c, with
 * x, ids and out at element offsets off, off + 1 and off + 2 of their buffers
 * (out's other elements must keep SENTINEL).  Returns the rows floats. */
static float *run_selected(const test_env *env, binv_context *c, const sel_prob *p, size_t row0,
                           size_t rows, size_t off) {
    const size_t es = hx_dtype_size(p->dt), n = rows * p->ld;
    unsigned char *xs = calloc(off + n, es);
    cl_uint *is = calloc(off + 1 + rows, sizeof *is);
    float *os = malloc((off + 3 + rows) * sizeof *os); /* one past the view */
    assert_true(xs && is && os);
    memcpy(xs + off * es, p->x + row0 * p->ld * es, n * es);
    memcpy(is + off + 1, p->ids + row0, rows * sizeof *is);
    for (size_t i = 0; i < off + 3 + rows; i++) os[i] = SENTINEL;
    cl_mem x = test_buffer(env, (off + n) * es, xs);
    cl_mem ids = test_buffer(env, (off + 1 + rows) * sizeof *is, is);
    cl_mem out = test_buffer(env, (off + 3 + rows) * sizeof *os, os);
    binv_status st = binv_selected_log_softmax(c, env->queue, p->dt, rows, p->cols, x, off, p->ld,
                                               ids, off + 1, out, off + 2, 0, NULL, NULL);
    if (st != BINV_SUCCESS) fprintf(stderr, "%s\n", binv_context_last_error(c));
    assert_int_equal(st, BINV_SUCCESS);
    test_read(env, out, (off + 3 + rows) * sizeof *os, os);
    for (size_t i = 0; i < off + 2; i++) assert_true(os[i] == SENTINEL);
    assert_true(os[off + 2 + rows] == SENTINEL);
    memmove(os, os + off + 2, rows * sizeof *os);
    clReleaseMemObject(x);
    clReleaseMemObject(ids);
    clReleaseMemObject(out);
    free(xs);
    free(is);
    return os;
}

/* binv_log_softmax of all of p through c: rows x ld storage words. */
static unsigned char *run_log_softmax(const test_env *env, binv_context *c, const sel_prob *p) {
    const size_t bytes = p->rows * p->ld * hx_dtype_size(p->dt);
    cl_mem x = test_buffer(env, bytes, p->x), y = test_buffer(env, bytes, NULL);
    assert_int_equal(binv_log_softmax(c, env->queue, p->dt, p->rows, p->cols, x, 0, p->ld, y, 0,
                                      p->ld, 0, NULL, NULL),
                     BINV_SUCCESS);
    unsigned char *h = malloc(bytes);
    assert_non_null(h);
    test_read(env, y, bytes, h);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    return h;
}

/* got (f32) is the element of y at (row, id): bitwise for f32, once rounded
 * to the dtype for f16/bf16 (two NaNs are equal whatever their payloads). */
static int matches(binv_dtype dt, float got, const unsigned char *y, size_t at) {
    const size_t es = hx_dtype_size(dt);
    unsigned char r[4];
    hx_store(dt, r, 0, got);
    if (isnan(got)) return isnan(hx_load(dt, y, at));
    return memcmp(r, y + at * es, es) == 0;
}

/* ---- bitwise equality with log_softmax + gather ----------------------------- */

static void test_selected_equals_gather(void **state) {
    test_env *env = *state;
    sel_ctxs s;
    ctxs_make(env, &s);
    static const size_t rows[] = {1, 3, 64};
    static const size_t cols[] = {1, 7, 4096, 14336, 152064};
    size_t checked = 0;
    for (size_t d = 0; d < 3; d++)
        for (size_t r = 0; r < 3; r++)
            for (size_t k = 0; k < 5; k++) {
                sel_prob p;
                prob_init(&p, DTYPES[d], rows[r], cols[k], 500 + 10 * k + r + 100 * d);
                for (int ci = 0; ci < NCTX; ci++) {
                    unsigned char *y = run_log_softmax(env, s.c[ci], &p);
                    float *out = run_selected(env, s.c[ci], &p, 0, p.rows, ci);
                    for (size_t i = 0; i < p.rows; i++) {
                        const size_t at = i * p.ld + p.ids[i];
                        if (!matches(p.dt, out[i], y, at))
                            fail_msg("%s rows=%zu cols=%zu row %zu id %u (%s): selected %.9g, "
                                     "log_softmax %.9g",
                                     hx_dtype_name(p.dt), p.rows, p.cols, i, p.ids[i], s.name[ci],
                                     (double)out[i], (double)hx_load(p.dt, y, at));
                        checked++;
                    }
                    free(y);
                    free(out);
                }
                prob_free(&p);
            }
    printf("# %zu selected log-probs equal to log_softmax + gather (3 dtypes, %d contexts)\n",
           checked, NCTX);
    ctxs_free(&s);
}

/* ---- invariance: a row alone, or anywhere in a batch, on any path ------------- */

static void test_selected_invariance(void **state) {
    test_env *env = *state;
    sel_ctxs s;
    ctxs_make(env, &s);
    static const size_t cols[] = {4096, 152064};
    static const size_t ms[] = {1, 3, 17};
    for (size_t d = 0; d < 3; d += 2) /* f32, bf16 */
        for (size_t k = 0; k < 2; k++) {
            const size_t R = 64;
            sel_prob p;
            prob_init(&p, DTYPES[d], R, cols[k], 900 + k + d);
            float *full = run_selected(env, env->ctx, &p, 0, R, 0);
            for (size_t mi = 0; mi < 3; mi++)
                for (int ci = 0; ci < NCTX; ci++) {
                    if (!s.invariant[ci]) continue;
                    const size_t m = ms[mi], starts[3] = {0, R / 2, R - m};
                    for (int si = 0; si < 3; si++) {
                        float *out = run_selected(env, s.c[ci], &p, starts[si], m, si + mi);
                        for (size_t i = 0; i < m; i++)
                            if (memcmp(&out[i], &full[starts[si] + i], 4) != 0)
                                fail_msg("%s cols=%zu: row %zu in a batch of %zu (%s) gives %.9g, "
                                         "in the batch of %zu %.9g",
                                         hx_dtype_name(p.dt), p.cols, starts[si] + i, m, s.name[ci],
                                         (double)out[i], (double)full[starts[si] + i], R);
                        free(out);
                    }
                }
            free(full);
            prob_free(&p);
        }
    ctxs_free(&s);
}

/* ---- ids out of range ------------------------------------------------------ */

static void test_selected_out_of_range(void **state) {
    test_env *env = *state;
    sel_ctxs s;
    ctxs_make(env, &s);
    static const size_t cols[] = {3000, 40000}; /* cached fused kernel; re-reading fused kernel */
    for (size_t k = 0; k < 2; k++) {
        sel_prob p;
        prob_init(&p, BINV_DTYPE_F32, 5, cols[k], 77 + k);
        const cl_uint bad[3] = {(cl_uint)cols[k], (cl_uint)cols[k] + 7, 0xffffffffu};
        for (int ci = 0; ci < NCTX; ci++) {
            float *ref = run_selected(env, s.c[ci], &p, 0, 5, 0);
            sel_prob q = p;
            cl_uint ids[5] = {p.ids[0], bad[0], p.ids[2], bad[1], bad[2]};
            q.ids = ids;
            float *out = run_selected(env, s.c[ci], &q, 0, 5, 1);
            for (size_t i = 0; i < 5; i++) {
                if (i == 0 || i == 2)
                    assert_memory_equal(&out[i], &ref[i], 4);
                else if (!isnan(out[i]))
                    fail_msg("cols=%zu id %u (%s): %.9g, want NaN", cols[k], ids[i], s.name[ci],
                             (double)out[i]);
            }
            free(ref);
            free(out);
        }
        prob_free(&p);
    }
    ctxs_free(&s);
}

/* ---- bad arguments ------------------------------------------------------------ */

static cl_mem flags_buffer(const test_env *env, cl_mem_flags flags, size_t bytes) {
    cl_int err;
    cl_mem b = clCreateBuffer(env->context, flags, bytes, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    return b;
}

static void check_bad(binv_context *c, binv_status got, binv_status want, const char *what,
                      const char *msg) {
    if (got != want)
        fail_msg("%s: got %d (%s), want %d (%s)", what, got, binv_status_string(got), want,
                 binv_status_string(want));
    if (msg && !strstr(binv_context_last_error(c), msg))
        fail_msg("%s: message '%s' does not mention '%s'", what, binv_context_last_error(c), msg);
}

static void test_selected_bad_input(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_command_queue q = env->queue;
    const binv_dtype F = BINV_DTYPE_F32;
    const size_t R = 4, C = 8;
    cl_int err;
    float xs[32];
    cl_uint is[4] = {0, 1, 2, 3};
    for (int i = 0; i < 32; i++) xs[i] = (float)i * 0.25f;
    cl_mem x = test_buffer(env, sizeof xs, xs), ids = test_buffer(env, sizeof is, is);
    cl_mem out = test_buffer(env, 4096, NULL), small = test_buffer(env, 8, NULL);
    cl_mem ro = flags_buffer(env, CL_MEM_READ_ONLY, 64),
           wo = flags_buffer(env, CL_MEM_WRITE_ONLY, 64);
    cl_context other = clCreateContext(NULL, 1, &env->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, 64, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    /* ids and out in one buffer: ids at element 0, out from element 2 (shared
     * storage), or out as a sub-buffer over ids' bytes. */
    cl_mem shared = test_buffer(env, 4096, NULL);
    test_write(env, shared, sizeof is, is);
    cl_uint align_bits = 0;
    assert_int_equal(clGetDeviceInfo(env->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                                     &align_bits, NULL),
                     CL_SUCCESS);
    const size_t al = align_bits / 8 ? align_bits / 8 : 1;
    cl_buffer_region reg = {0, al < 64 ? 64 : al};
    cl_mem shared_sub = clCreateSubBuffer(shared, 0, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
    assert_int_equal(err, CL_SUCCESS);
    fill_bytes(env, out, 4096, 0x5a);
    cl_event dummy = NULL;
    /* Each call fails with its status and a message naming the culprit (read
     * right after the call: the next one replaces it). */
#define BAD(want, what, msg, ctx_, q_, dt_, rows_, cols_, x_, xo_, ldx_, ids_, io_, out_, oo_, n_, \
            wl_)                                                                                   \
    check_bad(c,                                                                                   \
              binv_selected_log_softmax(ctx_, q_, dt_, rows_, cols_, x_, xo_, ldx_, ids_, io_,     \
                                        out_, oo_, n_, wl_, NULL),                                 \
              want, what, msg)
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL ctx", NULL, NULL, q, F, R, C, x, 0, C, ids, 0, out, 0, 0,
        NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL queue", "queue is NULL", c, NULL, F, R, C, x, 0, C, ids,
        0, out, 0, 0, NULL);
    BAD(BINV_ERROR_UNSUPPORTED_DTYPE, "dtype 0", "binv_selected_log_softmax: dtype", c, q,
        (binv_dtype)0, R, C, x, 0, C, ids, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "1 event, NULL wait list", "wait_list", c, q, F, R, C, x, 0, C,
        ids, 0, out, 0, 1, NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL event in the wait list", "wait_list[0]", c, q, F, R, C,
        x, 0, C, ids, 0, out, 0, 1, &dummy);
    BAD(BINV_ERROR_INVALID_DIMENSION, "cols 0", "cols is 0", c, q, F, R, 0, x, 0, C, ids, 0, out, 0,
        0, NULL);
    BAD(BINV_ERROR_INVALID_DIMENSION, "rows >= 2^31", "2^31", c, q, F, (size_t)1 << 33, C, x, 0, C,
        ids, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_LEADING_DIMENSION, "ldx < cols", "ldx=7", c, q, F, R, C, x, 0, C - 1,
        ids, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_DIMENSION, "extent overflow", "overflow", c, q, F, R, C, x, 0,
        SIZE_MAX / 2, ids, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL x", "x is NULL", c, q, F, R, C, NULL, 0, C, ids, 0, out,
        0, 0, NULL);
    BAD(BINV_ERROR_BUFFER_TOO_SMALL, "x past CL_MEM_SIZE", "x: the view", c, q, F, R, C, x, 1, C,
        ids, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL out", "out is NULL", c, q, F, R, C, x, 0, C, ids, 0,
        NULL, 0, 0, NULL);
    BAD(BINV_ERROR_BUFFER_TOO_SMALL, "out too small", "out: the view", c, q, F, R, C, x, 0, C, ids,
        0, small, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_DIMENSION, "out offset overflow", "out: offset", c, q, F, R, C, x, 0, C,
        ids, 0, out, SIZE_MAX - 1, 0, NULL);
    BAD(BINV_ERROR_INVALID_ARGUMENT, "NULL ids", "ids is NULL", c, q, F, R, C, x, 0, C, NULL, 0,
        out, 0, 0, NULL);
    BAD(BINV_ERROR_BUFFER_TOO_SMALL, "ids past CL_MEM_SIZE", "ids: the view", c, q, F, R, C, x, 0,
        C, ids, 1, out, 0, 0, NULL);
    BAD(BINV_ERROR_INVALID_DIMENSION, "ids offset overflow", "ids: offset", c, q, F, R, C, x, 0, C,
        ids, SIZE_MAX - 2, out, 0, 0, NULL);
    BAD(BINV_ERROR_BUFFER_TOO_SMALL, "ids too small", "ids: the view", c, q, F, R, C, x, 0, C,
        small, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_CONTEXT_MISMATCH, "ids of another context", "ids belongs", c, q, F, R, C, x, 0,
        C, foreign, 0, out, 0, 0, NULL);
    BAD(BINV_ERROR_CONTEXT_MISMATCH, "out of another context", "out belongs", c, q, F, R, C, x, 0,
        C, ids, 0, foreign, 0, 0, NULL);
    BAD(BINV_ERROR_ACCESS_FLAGS, "write-only ids", "ids is read", c, q, F, R, C, x, 0, C, wo, 0,
        out, 0, 0, NULL);
    BAD(BINV_ERROR_ACCESS_FLAGS, "read-only out", "out is written", c, q, F, R, C, x, 0, C, ids, 0,
        ro, 0, 0, NULL);
    BAD(BINV_ERROR_ALIASING, "out overlaps x", "out overlaps x", c, q, F, R, C, x, 0, C, ids, 0, x,
        0, 0, NULL);
    BAD(BINV_ERROR_ALIASING, "out overlaps ids", "out overlaps ids", c, q, F, R, C, x, 0, C, shared,
        0, shared, 2, 0, NULL);
    BAD(BINV_ERROR_ALIASING, "out a sub-buffer over ids", "out overlaps ids", c, q, F, R, C, x, 0,
        C, shared, 0, shared_sub, 0, 0, NULL);
#undef BAD
    assert_true(all_bytes(env, out, 4096, 0x5a)); /* nothing written by any failing call */
    cl_event ev = NULL;
    /* rows == 0: a no-op that still returns an event; ids and out are not
     * looked at beyond their handles. */
    assert_int_equal(
        binv_selected_log_softmax(c, q, F, 0, C, x, 0, C, ids, 0, out, 0, 0, NULL, &ev),
        BINV_SUCCESS);
    assert_non_null(ev);
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    assert_true(all_bytes(env, out, 4096, 0x5a));
    /* ids may share storage with x (both are read). */
    assert_int_equal(
        binv_selected_log_softmax(c, q, F, 1, 4, shared, 0, 4, shared, 0, out, 0, 0, NULL, NULL),
        BINV_SUCCESS);
    clFinish(q);
    cl_mem all[] = {x, ids, out, small, ro, wo, foreign, shared_sub, shared};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) clReleaseMemObject(all[i]);
    clReleaseContext(other);
}

/* ---- portable bits --------------------------------------------------------- */

/* The f32 results' hashes, the same on every device (tests/golden/rows.txt):
 * short rows (the fused kernels on most devices) and vocabulary-long rows. */
static void test_selected_golden(void **state) {
    test_env *env = *state;
    static const size_t shapes[][2] = {{64, 5000}, {3, 152064}};
    int bad = 0;
    for (size_t k = 0; k < 2; k++)
        for (size_t d = 0; d < 3; d++) {
            sel_prob p;
            prob_init(&p, DTYPES[d], shapes[k][0], shapes[k][1], 2024 + k);
            float *out = run_selected(env, env->ctx, &p, 0, p.rows, 0);
            char hex[65], name[96];
            test_sha256_hex(out, p.rows * sizeof *out, hex);
            snprintf(name, sizeof name, "selected_log_softmax_%s_%zux%zu", hx_dtype_name(p.dt),
                     p.rows, p.cols);
            if (!test_golden_check("rows.txt", name, hex)) bad++;
            free(out);
            prob_free(&p);
        }
    if (bad) fail_msg("%d golden hashes differ on '%s'", bad, env->device_name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selected_bad_input),     cmocka_unit_test(test_selected_out_of_range),
        cmocka_unit_test(test_selected_invariance),    cmocka_unit_test(test_selected_golden),
        cmocka_unit_test(test_selected_equals_gather),
    };
    return cmocka_run_group_tests_name("selected", tests, test_env_setup, test_env_teardown);
}
