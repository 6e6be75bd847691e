/* families — every kernel family of the library at small sizes, every path
 * that can be forced and every storage dtype, through the public API.
 *
 * Meant to run under oclgrind (tests/oclgrind/run.sh), which simulates an
 * OpenCL device and reports data races, reads of uninitialised memory,
 * out-of-bounds accesses, barrier divergence and invalid API use.  Those are
 * the usual reasons why one compiler accepts a kernel that another breaks, so
 * the sizes are small (the simulator interprets every work-item) but chosen
 * to reach every branch of the kernels' control flow:
 * row lengths of one chunk and of several (split rows), GEMMs with k of one
 * chunk and of several (split-K), ragged tiles, attention contexts longer than
 * one key split, prefill and decode tokens in one step.
 *
 * Runs on any device (BINV_TEST_DEVICE as the suites, default 0:0); prints
 * one line per case and exits non-zero when a call fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binv/binv.h"
#include "harness.h"
#include "internal.h" /* binv_context_create_tuned, binv_tuning_set */

static int failures;

static void expect(binv_context *bc, binv_status st, const char *what, const char *dt,
                   const char *path) {
    if (st == BINV_SUCCESS) return;
    fprintf(stderr, "FAIL %s (%s, %s): %s: %s\n", what, dt, path, binv_status_string(st),
            binv_context_last_error(bc));
    failures++;
}

static size_t esize(binv_dtype dt) { return dt == BINV_DTYPE_F32 ? 4 : 2; }

/* A buffer of `elems` storage elements holding small finite values (the
 * same 16-bit pattern in each half-word: a finite bf16/f16 in 2-byte storage,
 * and for f32 a finite float). */
static cl_mem buffer(hx_device *d, binv_dtype dt, size_t elems) {
    const size_t bytes = elems * esize(dt);
    unsigned short *h = malloc(bytes);
    if (!h) return NULL;
    for (size_t i = 0; i < bytes / 2; i++) h[i] = (unsigned short)(0x3c00u + (i * 37u) % 0x300u);
    cl_int err;
    cl_mem m = clCreateBuffer(d->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, h, &err);
    free(h);
    return err == CL_SUCCESS ? m : NULL;
}

static void gemm_cases(binv_context *bc, hx_device *d, binv_dtype dt, const char *dn,
                       const char *path) {
    /* (m, n, k): decode-sized, split-K over several chunks, ragged tiles. */
    static const size_t shapes[][3] = {{1, 24, 40}, {3, 17, 200}, {40, 36, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        cl_mem a = buffer(d, dt, m * k), b = buffer(d, dt, n * k), c = buffer(d, dt, m * n);
        if (a && b && c)
            expect(bc, binv_gemm(bc, d->queue, dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f, a, 0, k,
                                 b, 0, k, 0.5f, c, 0, n, 0, NULL, NULL),
                   "binv_gemm", dn, path);
        else failures++;
        if (a) clReleaseMemObject(a);
        if (b) clReleaseMemObject(b);
        if (c) clReleaseMemObject(c);
    }
}

static void rows_cases(binv_context *bc, hx_device *d, binv_dtype dt, const char *dn,
                       const char *path) {
    static const size_t widths[] = {70, 1100}; /* one chunk; two chunks, the last ragged */
    for (size_t s = 0; s < 2; s++) {
        const size_t rows = 2, cols = widths[s];
        cl_mem x = buffer(d, dt, rows * cols), r = buffer(d, dt, rows * cols);
        cl_mem w = buffer(d, dt, cols), g = buffer(d, dt, cols), y = buffer(d, dt, rows * cols);
        cl_mem out = buffer(d, BINV_DTYPE_F32, rows);
        /* selected_log_softmax: the last column, and an id out of range (NaN). */
        cl_uint sel_ids[2] = {(cl_uint)cols - 1, (cl_uint)cols + 3};
        cl_int err;
        cl_mem ids = clCreateBuffer(d->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                    sizeof sel_ids, sel_ids, &err);
        if (err != CL_SUCCESS) ids = NULL;
        cl_command_queue q = d->queue;
        if (x && r && w && g && y && out && ids) {
            expect(bc, binv_rmsnorm(bc, q, dt, rows, cols, x, 0, cols, w, 0, 1e-5f, y, 0, cols, 0,
                                    NULL, NULL), "binv_rmsnorm", dn, path);
            expect(bc, binv_add_rmsnorm(bc, q, dt, rows, cols, x, 0, cols, r, 0, cols, w, 0, 1e-5f,
                                        y, 0, cols, 0, NULL, NULL), "binv_add_rmsnorm", dn, path);
            expect(bc, binv_layernorm(bc, q, dt, rows, cols, x, 0, cols, w, 0, g, 0, 1e-5f, y, 0,
                                      cols, 0, NULL, NULL), "binv_layernorm", dn, path);
            expect(bc, binv_softmax(bc, q, dt, rows, cols, x, 0, cols, y, 0, cols, 0, NULL, NULL),
                   "binv_softmax", dn, path);
            expect(bc, binv_log_softmax(bc, q, dt, rows, cols, x, 0, cols, y, 0, cols, 0, NULL,
                                        NULL), "binv_log_softmax", dn, path);
            expect(bc, binv_selected_log_softmax(bc, q, dt, rows, cols, x, 0, cols, ids, 0, out, 0,
                                                 0, NULL, NULL),
                   "binv_selected_log_softmax", dn, path);
            expect(bc, binv_row_sum(bc, q, dt, rows, cols, x, 0, cols, out, 0, 0, NULL, NULL),
                   "binv_row_sum", dn, path);
            expect(bc, binv_row_mean(bc, q, dt, rows, cols, x, 0, cols, out, 0, 0, NULL, NULL),
                   "binv_row_mean", dn, path);
            expect(bc, binv_swiglu(bc, q, dt, rows, cols, x, 0, cols, r, 0, cols, y, 0, cols, 0,
                                   NULL, NULL), "binv_swiglu", dn, path);
            /* dy = x (inputs may share bytes), dgate into y, dup in place over up */
            expect(bc, binv_swiglu_backward(bc, q, dt, rows, cols, x, 0, cols, r, 0, cols, x, 0, cols,
                                            y, 0, cols, r, 0, cols, 0, NULL, NULL),
                   "binv_swiglu_backward", dn, path);
        } else {
            failures++;
        }
        cl_mem all[] = {x, r, w, g, y, out, ids};
        for (size_t i = 0; i < 7; i++)
            if (all[i]) clReleaseMemObject(all[i]);
    }
}

/* binv_rmsnorm_backward: rows of one chunk and of two (the last ragged);
 * one row chunk and two (the last ragged); accumulating and not; dx over dy
 * (in place). */
static void rows_backward_cases(binv_context *bc, hx_device *d, binv_dtype dt, const char *dn,
                                const char *path) {
    static const size_t shapes[][2] = {{2, 1100}, {70, 40}};
    for (size_t s = 0; s < 2; s++) {
        const size_t rows = shapes[s][0], cols = shapes[s][1];
        cl_mem x = buffer(d, dt, rows * cols), dy = buffer(d, dt, rows * cols);
        cl_mem w = buffer(d, dt, cols), dx = buffer(d, dt, rows * cols);
        cl_mem dw = buffer(d, BINV_DTYPE_F32, cols);
        cl_command_queue q = d->queue;
        if (x && dy && w && dx && dw) {
            expect(bc, binv_rmsnorm_backward(bc, q, dt, rows, cols, x, 0, cols, w, 0, 1e-5f, dy, 0,
                                             cols, dx, 0, cols, dw, 0, 0, 0, NULL, NULL),
                   "binv_rmsnorm_backward", dn, path);
            expect(bc, binv_rmsnorm_backward(bc, q, dt, rows, cols, x, 0, cols, w, 0, 1e-5f, dy, 0,
                                             cols, dy, 0, cols, dw, 0, 1, 0, NULL, NULL),
                   "binv_rmsnorm_backward (in place, accumulate)", dn, path);
        } else {
            failures++;
        }
        cl_mem all[] = {x, dy, w, dx, dw};
        for (size_t i = 0; i < 5; i++)
            if (all[i]) clReleaseMemObject(all[i]);
    }
}

static void attention_cases(binv_context *bc, hx_device *d, binv_dtype dt, const char *dn,
                            const char *path) {
    /* Two sequences: a chunk of a prefill whose context spans more than one
     * key split, and one decode token; pages out of order. */
    enum { HEADS = 4, KV_HEADS = 2, HD = 16, PAGES = 24, MAXP = 20 };
    const cl_uint q_lens[2] = {3, 1};
    const size_t split = binv_attention_split_size(dt, HD);
    const cl_uint ctx_lens[2] = {(cl_uint)(split + 21), 5};
    cl_uint table[2 * MAXP];
    for (cl_uint i = 0; i < 2 * MAXP; i++) table[i] = (7 * i + 3) % PAGES;
    if (ctx_lens[0] > MAXP * BINV_KV_PAGE_SIZE) {
        fprintf(stderr, "FAIL attention: split %zu does not fit the test's page table\n", split);
        failures++;
        return;
    }
    const size_t tokens = 4, pool = (size_t)PAGES * BINV_KV_PAGE_SIZE * KV_HEADS * HD;
    cl_mem kp = buffer(d, dt, pool), vp = buffer(d, dt, pool);
    cl_mem q = buffer(d, dt, tokens * HEADS * HD), o = buffer(d, dt, tokens * HEADS * HD);
    cl_mem kn = buffer(d, dt, tokens * KV_HEADS * HD), vn = buffer(d, dt, tokens * KV_HEADS * HD);
    binv_kv_batch *batch = NULL;
    if (kp && vp && q && o && kn && vn) {
        const binv_kv_cache cache = {dt, PAGES, KV_HEADS, HD, kp, vp};
        binv_status st = binv_kv_batch_create(bc, d->queue, PAGES, 2, q_lens, ctx_lens, table, MAXP,
                                              &batch);
        expect(bc, st, "binv_kv_batch_create", dn, path);
        if (st == BINV_SUCCESS) {
            cl_mem pos = binv_kv_batch_positions(batch);
            expect(bc, binv_rope(bc, d->queue, dt, tokens, HEADS, HD, q, 0, HEADS * HD, pos, 0,
                                 10000.0f, 0, NULL, NULL), "binv_rope(q)", dn, path);
            expect(bc, binv_rope(bc, d->queue, dt, tokens, KV_HEADS, HD, kn, 0, KV_HEADS * HD, pos,
                                 0, 10000.0f, 0, NULL, NULL), "binv_rope(k)", dn, path);
            expect(bc, binv_rope_backward(bc, d->queue, dt, tokens, HEADS, HD, o, 0, HEADS * HD,
                                          pos, 0, 10000.0f, 0, NULL, NULL),
                   "binv_rope_backward", dn, path);
            expect(bc, binv_kv_append(bc, d->queue, &cache, batch, kn, 0, KV_HEADS * HD, vn, 0,
                                      KV_HEADS * HD, 0, NULL, NULL), "binv_kv_append", dn, path);
            expect(bc, binv_attention(bc, d->queue, &cache, batch, HEADS, 0.25f, q, 0, HEADS * HD,
                                      o, 0, HEADS * HD, 0, NULL, NULL), "binv_attention", dn, path);
            expect(bc, binv_kv_append_rope_q(bc, d->queue, &cache, batch, HEADS, q, 0, HEADS * HD,
                                             kn, 0, KV_HEADS * HD, vn, 0, KV_HEADS * HD, 10000.0f,
                                             0, NULL, NULL), "binv_kv_append_rope_q", dn, path);
        }
    } else {
        failures++;
    }
    binv_kv_batch_destroy(batch);
    cl_mem all[] = {kp, vp, q, o, kn, vn};
    for (size_t i = 0; i < 6; i++)
        if (all[i]) clReleaseMemObject(all[i]);
}

int main(int argc, char **argv) {
    /* --list: the contexts' names (VAR=VALUE), one per line, for
     * BINV_FAMILIES_PATH. */
    const int list = argc > 1 && !strcmp(argv[1], "--list");
    const char *want = getenv("BINV_TEST_DEVICE");
    hx_device d;
    if (!list && hx_device_open(want && *want ? want : "0:0", &d) != 0) return 1;
    if (!list) printf("device: %s / %s\n", d.platform_name, d.name);
    /* Each forced path in a context of its own, through the library's
     * testing hook (binv_context_create_tuned). */
    static const char *const knobs[][2] = {
        {NULL, NULL},
        {"BINV_GEMM_PATH", "skinny"}, {"BINV_GEMM_PATH", "splitk"},
        {"BINV_GEMM_PATH", "tiled"},  {"BINV_GEMM_PATH", "stream"},
        {"BINV_GEMM_FUSE", "0"},      {"BINV_ROWS_PATH", "fused"},
        {"BINV_ROWS_PATH", "split"},  {"BINV_ATTN_PATH", "fused"},
        {"BINV_ATTN_PATH", "split"},
    };
    static const binv_dtype dts[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
    static const char *const dtn[] = {"f32", "f16", "bf16"};
    for (size_t kn = 0; kn < sizeof knobs / sizeof knobs[0]; kn++) {
        const char *var = knobs[kn][0], *val = knobs[kn][1];
        char path[64];
        snprintf(path, sizeof path, "%s=%s", var ? var : "default", val ? val : "auto");
        if (list) {
            printf("%s\n", path);
            continue;
        }
        /* BINV_FAMILIES_PATH=VAR=VALUE[,...] runs those contexts only. */
        const char *only_path = getenv("BINV_FAMILIES_PATH");
        if (only_path && !strstr(only_path, path)) continue;
        const binv_options opt = {sizeof(binv_options), BINV_SCHEDULE_INVARIANT, NULL,
                                  BINV_PATH_PORTABLE};
        binv_tuning tuning; /* the environment's knobs, the forced one on top */
        binv_tuning_from_env(&tuning);
        if (var) binv_tuning_set(&tuning, var, val);
        binv_context *bc = NULL;
        binv_status st = binv_context_create_tuned(d.context, d.device, &opt, &tuning, &bc);
        if (st != BINV_SUCCESS) {
            fprintf(stderr, "FAIL binv_context_create (%s): %s\n", path, binv_status_string(st));
            failures++;
            break;
        }
        /* BINV_FAMILIES=gemm,rows,attention runs only those (debugging). */
        const char *only = getenv("BINV_FAMILIES");
        const int gemm = (!var || !strncmp(var, "BINV_GEMM", 9)) && (!only || strstr(only, "gemm"));
        const int rows = (!var || !strcmp(var, "BINV_ROWS_PATH")) && (!only || strstr(only, "rows"));
        const int attn = (!var || !strcmp(var, "BINV_ATTN_PATH")) &&
                         (!only || strstr(only, "attention"));
        const char *only_dt = getenv("BINV_FAMILIES_DTYPE"); /* f32, f16 or bf16 (debugging) */
        for (int t = 0; t < 3; t++) {
            if (only_dt && strcmp(only_dt, dtn[t])) continue;
            /* f16 differs from bf16 in loads and stores only: once, on the
             * default paths (the simulator is slow). */
            if (var && dts[t] == BINV_DTYPE_F16) continue;
            if (gemm) gemm_cases(bc, &d, dts[t], dtn[t], path);
            if (rows) rows_cases(bc, &d, dts[t], dtn[t], path);
            if (rows && !var) rows_backward_cases(bc, &d, dts[t], dtn[t], path);
            if (attn) attention_cases(bc, &d, dts[t], dtn[t], path);
            if (clFinish(d.queue) != CL_SUCCESS) {
                fprintf(stderr, "FAIL clFinish (%s, %s)\n", dtn[t], path);
                failures++;
            }
            printf("%-22s %-4s done\n", path, dtn[t]);
            fflush(stdout);
        }
        binv_context_destroy(bc);
    }
    if (list) return 0;
    hx_device_close(&d);
    printf("%s\n", failures ? "FAILED" : "all calls succeeded");
    return failures ? 1 : 0;
}
