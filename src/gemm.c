/* binv_gemm: argument validation, schedule and path choice, launches.
 * The kernels and their reduction order: cl/gemm.cl; the schedule:
 * docs/schedules.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The invariant K-chunk length: a function of (dtype, k) only.  Changing it
 * changes every output's bits: it is part of the library's contract and of
 * the golden hashes in tests/golden/.
 * kc = the power of two >= k/8, clamped to [64, 512]: long reductions use
 * 512-element chunks; shorter ones still get ~8 chunks so that a small-m
 * GEMM has chunks to run in parallel. */
#define BINV_GEMM_KC_MIN 64
#define BINV_GEMM_KC_MAX 512

size_t binv_gemm_chunk_size(binv_dtype dtype, size_t k) {
    if (binv_dtype_size(dtype) == 0) return 0;
    size_t want = (k + 7) / 8, kc = BINV_GEMM_KC_MIN;
    while (kc < want && kc < BINV_GEMM_KC_MAX) kc *= 2;
    return kc;
}

/* Tile shapes per device class.  They decide who computes what, never the
 * order of any reduction, so they may be tuned freely (BINV_GEMM_TILE=
 * "BM,BN,BK,RM,RN" overrides, for tuning runs). */
typedef struct gemm_config {
    unsigned bm, bn, bk, rm, rn; /* gemm_tiled */
    unsigned tglob;              /* gemm_tiled: running total in a workspace, not registers */
    unsigned sn, smr, sk;        /* gemm_skinny */
    unsigned tn, tr, nc, tv;     /* gemm_stream: columns and rows per group, columns per item,
                                    16-byte vectors of each row per step */
} gemm_config;

/* Local memory of gemm_stream and gemm_skinny for a shape, in bytes: the
 * __local arrays of cl/gemm.cl plus the 4-byte arrival flag (vw: elements
 * per 16-byte vector). */
static size_t stream_local(size_t tn, size_t tr, size_t tv, size_t vw) {
    return 2 * tn * (tv + 1) * 16 + 2 * tr * tv * vw * 4 + 4;
}
static size_t skinny_local(size_t sn, size_t smr, size_t sk) {
    return (sn * (sk + 1) + smr * sk) * 4 + 4;
}

static gemm_config pick_config(const binv_context *ctx, binv_dtype dtype, size_t m, size_t n) {
    const size_t vw = dtype == BINV_DTYPE_F32 ? 4 : 8;
    gemm_config g;
    if (ctx->info.type & CL_DEVICE_TYPE_GPU) {
        /* skinny: 4 rows per group for m <= 4 (fewer idle accumulators), 8
         * above; 32-value steps. */
        /* stream: rows per group rounded up to a power of two (idle
         * accumulators cost issue slots), capped at 4 (16-bit weights up to
         * m = 16, f32 up to m = 8), else 8 for 16-bit and 16 for f32 weights:
         * row blocks run side by side and share the weight stream through
         * L2.  One column per work-item.  (Measurements: docs/tuning.md.) */
        const unsigned cap = dtype == BINV_DTYPE_F32 ? (m <= 8 ? 4 : 16) : (m <= 16 ? 4 : 8);
        unsigned tr = 1;
        while (tr < m && tr < cap) tr *= 2;
        /* f32 at m = 1: 256-byte steps (more bytes in flight per row; 64
         * columns per group, so that the double-buffered tile fits 48 KB). */
        /* gemm_tiled keeps its running totals in an m x n f32 workspace
         * (TGLOB) up to 256 MB: in registers they push the kernel into
         * spills. */
        /* gemm_tiled: 64 x 128 tiles above m = 512 (128 work-items, so two
         * groups fit an SM), 128 x 128 at and below, where split-K runs.
         * docs/tuning.md has the measurements behind these defaults. */
        g = (gemm_config){.bm = m > 512 ? 64 : 128, .bn = 128, .bk = 16, .rm = 8, .rn = 8,
                          .tglob = (double)m * (double)n * 4.0 <= 256.0 * 1048576.0,
                          .sn = 128, .smr = m <= 4 ? 4 : 8, .sk = 32,
                          .tn = 128, .tr = tr, .nc = 1,
                          .tv = dtype == BINV_DTYPE_F32 && m == 1 ? 16 : 8};
    } else {
        g = (gemm_config){.bm = 32, .bn = 32, .bk = 16, .rm = 4, .rn = 4, .tglob = 0,
                          .sn = 64, .smr = 8, .sk = 32, .tn = 64, .tr = 8, .nc = 2, .tv = 8};
        if (dtype != BINV_DTYPE_F32) g.sk = 64; /* same bytes per staged row */
    }
    /* Overrides (tuning; src/tuning.c checked their syntax and ranges), where
     * they fit the device. */
    const binv_tuning *tu = &ctx->tuning;
    if (tu->gemm_skinny.set && BINV_GEMM_KC_MIN % tu->gemm_skinny.sk == 0 &&
        tu->gemm_skinny.sn <= ctx->info.max_work_group_size &&
        skinny_local(tu->gemm_skinny.sn, tu->gemm_skinny.smr, tu->gemm_skinny.sk) <=
            ctx->info.local_mem_size) {
        g.sn = tu->gemm_skinny.sn; g.smr = tu->gemm_skinny.smr; g.sk = tu->gemm_skinny.sk;
    }
    if (tu->gemm_tile.set) {
        const unsigned bm = tu->gemm_tile.bm, bn = tu->gemm_tile.bn, bk = tu->gemm_tile.bk,
                       rm = tu->gemm_tile.rm, rn = tu->gemm_tile.rn;
        if ((size_t)(bm / rm) * (bn / rn) <= ctx->info.max_work_group_size &&
            (size_t)2 * bk * (bm + bn + 8) * 4 <= ctx->info.local_mem_size) {
            g.bm = bm; g.bn = bn; g.bk = bk; g.rm = rm; g.rn = rn;
        }
    }
    if (tu->gemm_tglob >= 0) g.tglob = (unsigned)tu->gemm_tglob;
    if (tu->gemm_stream.set) {
        const unsigned tn = tu->gemm_stream.tn, tr = tu->gemm_stream.tr, nc = tu->gemm_stream.nc,
                       tv = tu->gemm_stream.has_tv ? tu->gemm_stream.tv : g.tv;
        if (tn / nc <= ctx->info.max_work_group_size &&
            stream_local(tn, tr, tv, vw) <= ctx->info.local_mem_size) {
            g.tn = tn; g.tr = tr; g.nc = nc; g.tv = tv;
        }
    }
    /* Fall back to smaller tiles on devices with small work-groups. */
    while ((size_t)(g.bm / g.rm) * (g.bn / g.rn) > ctx->info.max_work_group_size && g.bm > 32) {
        g.bm /= 2;
        g.bn /= 2;
    }
    /* ... and with less local memory than the double-buffered tiles need (a
     * GPU with 32 KiB would refuse the launch). */
    while ((size_t)2 * g.bk * (g.bm + g.bn + 8) * 4 > ctx->info.local_mem_size && g.bm > 32) {
        g.bm /= 2;
        g.bn /= 2;
    }
    while (g.tn / g.nc > ctx->info.max_work_group_size && g.tn > 8 * g.nc) g.tn /= 2;
    /* Default shapes within the device's local memory (a device whose
     * compiler enforces it would otherwise fail the whole program). */
    while (stream_local(g.tn, g.tr, g.tv, vw) > ctx->info.local_mem_size && g.tn > 8 * g.nc)
        g.tn /= 2;
    while (skinny_local(g.sn, g.smr, g.sk) > ctx->info.local_mem_size && g.sn > 32) g.sn /= 2;
    return g;
}


/* Largest m for the small-m kernels (gemm_stream, gemm_skinny): above it
 * split-K runs on gemm_tiled.  64 by default: up to there gemm_stream is the
 * faster of the two on GPUs (docs/tuning.md).  BINV_GEMM_SMALL_M overrides
 * (tuning). */
static size_t small_m_limit(const binv_context *ctx) { return ctx->tuning.gemm_small_m; }

typedef struct gemm_args {
    binv_dtype dtype;
    size_t m, n, k;
    float alpha, beta;
    cl_mem a, b, c;
    cl_ulong a_off, sai, sap, b_off, sbp, sbj, c_off, ldc;
} gemm_args;

/* Validates everything before anything is enqueued. */
static binv_status validate(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                            binv_transpose ta, binv_transpose tb, size_t m, size_t n, size_t k,
                            cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                            size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc,
                            cl_uint num_events, const cl_event *wait_list) {
    binv_status st;
    BINV_RETURN_ERROR_ON(binv_dtype_size(dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "binv_gemm: dtype %d is not a binv_dtype", (int)dtype);
    BINV_RETURN_ERROR_ON(ta != BINV_NO_TRANS && ta != BINV_TRANS, ctx, BINV_ERROR_INVALID_ENUM,
                         "binv_gemm: trans_a %d is not a binv_transpose", (int)ta);
    BINV_RETURN_ERROR_ON(tb != BINV_NO_TRANS && tb != BINV_TRANS, ctx, BINV_ERROR_INVALID_ENUM,
                         "binv_gemm: trans_b %d is not a binv_transpose", (int)tb);
    if ((st = binv_check_queue(ctx, queue)) != BINV_SUCCESS) return st;
    if ((st = binv_check_wait_list(ctx, num_events, wait_list)) != BINV_SUCCESS) return st;
    /* The kernels index within a dimension with 32-bit integers. */
    BINV_RETURN_ERROR_ON(m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff, ctx,
                         BINV_ERROR_INVALID_DIMENSION,
                         "binv_gemm: m=%zu n=%zu k=%zu: each must be below 2^31", m, n, k);
    /* Rows x row length of each operand as stored. */
    size_t a_rows = ta == BINV_NO_TRANS ? m : k, a_cols = ta == BINV_NO_TRANS ? k : m;
    size_t b_rows = tb == BINV_NO_TRANS ? k : n, b_cols = tb == BINV_NO_TRANS ? n : k;
    BINV_RETURN_ERROR_ON(lda < a_cols || lda == 0, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "binv_gemm: lda=%zu is smaller than A's row length %zu (or 0)", lda,
                         a_cols);
    BINV_RETURN_ERROR_ON(ldb < b_cols || ldb == 0, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "binv_gemm: ldb=%zu is smaller than B's row length %zu (or 0)", ldb,
                         b_cols);
    BINV_RETURN_ERROR_ON(ldc < n || ldc == 0, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "binv_gemm: ldc=%zu is smaller than n=%zu (or 0)", ldc, n);
    /* Extent of a view: (rows-1)*ld + cols elements (0 for an empty view). */
    size_t ext_a = 0, ext_b = 0, ext_c = 0;
    size_t esz = binv_dtype_size(dtype);
    int ok = 1;
    if (m && n && k) ok &= binv_mul_add_size(a_rows - 1, lda, a_cols, &ext_a);
    if (m && n && k) ok &= binv_mul_add_size(b_rows - 1, ldb, b_cols, &ext_b);
    if (m && n) ok &= binv_mul_add_size(m - 1, ldc, n, &ext_c);
    BINV_RETURN_ERROR_ON(!ok, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "binv_gemm: matrix extents overflow size_t (m=%zu n=%zu k=%zu)", m, n, k);
    /* A and B are checked (NULL, cl_context, offset) even where a zero
     * dimension means they are not read: a foreign buffer is a caller bug. */
    if ((st = binv_check_buffer(ctx, c, c_off, ext_c, esz, "C")) != BINV_SUCCESS) return st;
    if ((st = binv_check_buffer(ctx, a, a_off, ext_a, esz, "A")) != BINV_SUCCESS) return st;
    if ((st = binv_check_buffer(ctx, b, b_off, ext_b, esz, "B")) != BINV_SUCCESS) return st;
    /* C is written while A and B are read: views sharing a byte (through
     * sub-buffers too) would make results depend on scheduling.  With k == 0
     * A and B are not read (empty views). */
    const int rd = m && n && k;
    binv_view va, vb, vc;
    if ((st = binv_view_of(ctx, c, c_off, m && n ? m : 0, n, ldc, esz,
                           BINV_ACCESS_WRITE | (beta != 0.0f ? BINV_ACCESS_READ : 0), "C",
                           &vc)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, a, a_off, rd ? a_rows : 0, a_cols, lda, esz, BINV_ACCESS_READ,
                           "A", &va)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, b, b_off, rd ? b_rows : 0, b_cols, ldb, esz, BINV_ACCESS_READ,
                           "B", &vb)) != BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vc, &va), ctx, BINV_ERROR_ALIASING,
                         "binv_gemm: C overlaps A");
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vc, &vb), ctx, BINV_ERROR_ALIASING,
                         "binv_gemm: C overlaps B");
    return BINV_SUCCESS;
}

/* Enqueues one kernel, taking a pooled cl_kernel for the duration. */
/* Split-K launches: ws holds the partials; for gemm_skinny and gemm_stream
 * cnt, where not NULL, the arrival counters of the one-launch variant (the
 * tile's last group combines). */
static binv_status launch_tiled(binv_context *ctx, cl_command_queue q, cl_program prog,
                                const gemm_config *g, const gemm_args *x, cl_uint mode,
                                cl_uint kc, cl_uint nchunks, cl_mem ws, cl_uint nwait,
                                const cl_event *wait, cl_event *ev) {
    cl_uint m = (cl_uint)x->m, n = (cl_uint)x->n, k = (cl_uint)x->k;
    cl_mem p = ws ? ws : x->c; /* P is unused in mode 0 but must be a buffer */
    cl_uint vw = x->dtype == BINV_DTYPE_F32 ? 4 : 8;
    int steps_aligned = kc % vw == 0 && g->bk % vw == 0;
    cl_uint vec = (steps_aligned && x->sap == 1 && x->a_off % vw == 0 && x->sai % vw == 0 ? 1u : 0u) |
                  (steps_aligned && x->sbp == 1 && x->b_off % vw == 0 && x->sbj % vw == 0 ? 2u : 0u);
    const binv_arg args[] = {
        BINV_ARG(mode),   BINV_ARG(m),       BINV_ARG(n),      BINV_ARG(k),
        BINV_ARG(kc),     BINV_ARG(nchunks), BINV_ARG(x->alpha), BINV_ARG(x->beta),
        BINV_ARG(x->a),   BINV_ARG(x->a_off), BINV_ARG(x->sai), BINV_ARG(x->sap),
        BINV_ARG(x->b),   BINV_ARG(x->b_off), BINV_ARG(x->sbp), BINV_ARG(x->sbj),
        BINV_ARG(vec),    BINV_ARG(x->c),    BINV_ARG(x->c_off), BINV_ARG(x->ldc),
        BINV_ARG(p)};
    size_t lws[3] = {g->bn / g->rn, g->bm / g->rm, 1};
    size_t gws[3] = {binv_ceil_div(x->n, g->bn) * lws[0], binv_ceil_div(x->m, g->bm) * lws[1],
                     mode ? nchunks : 1};
    /* gemm_tiled_nt (the same tiles and sums, leaner copies) where both
     * operands are K-contiguous with whole aligned vectors, steps never
     * cross a chunk end and its copy plan divides the tiles.
     * BINV_GEMM_NT=0 keeps gemm_tiled (tuning, tests). */
    const size_t nt = lws[0] * lws[1], tnv = g->bk / vw;
    const int lean = mode == 0 && vec == 3u && k % vw == 0 && kc % g->bk == 0 && tnv &&
                     nt % tnv == 0 && g->bm % (nt / tnv) == 0 && g->bn % (nt / tnv) == 0 &&
                     !ctx->tuning.gemm_no_nt;
    return binv_kernel_launch(ctx, q, prog, lean ? "gemm_tiled_nt" : "gemm_tiled", args,
                              BINV_NARGS(args), 3, gws, lws, nwait, wait, ev);
}

/* gemm_skinny and gemm_stream: the same arguments; group grid (row block,
 * column block, chunk), row blocks fastest; wg work-items per group, rows x
 * cols outputs per group. */
static binv_status launch_small(binv_context *ctx, cl_command_queue q, cl_program prog,
                                const char *kernel, size_t wg, size_t rows, size_t cols,
                                cl_uint bvec, const gemm_args *x, cl_uint kc, cl_uint nchunks,
                                cl_mem ws, cl_mem cnt, cl_uint nwait, const cl_event *wait,
                                cl_event *ev) {
    cl_uint m = (cl_uint)x->m, n = (cl_uint)x->n, k = (cl_uint)x->k;
    cl_uint fuse = cnt != NULL;
    cl_mem cn = cnt ? cnt : ws;
    const binv_arg args[] = {
        BINV_ARG(m),      BINV_ARG(n),        BINV_ARG(k),       BINV_ARG(kc),
        BINV_ARG(nchunks), BINV_ARG(x->a),    BINV_ARG(x->a_off), BINV_ARG(x->sai),
        BINV_ARG(x->sap), BINV_ARG(x->b),     BINV_ARG(x->b_off), BINV_ARG(x->sbp),
        BINV_ARG(x->sbj), BINV_ARG(bvec),     BINV_ARG(ws),      BINV_ARG(fuse),
        BINV_ARG(cn),     BINV_ARG(x->alpha), BINV_ARG(x->beta), BINV_ARG(x->c),
        BINV_ARG(x->c_off), BINV_ARG(x->ldc)};
    size_t lws[3] = {wg, 1, 1};
    size_t gws[3] = {binv_ceil_div(x->m, rows) * wg, binv_ceil_div(x->n, cols), nchunks};
    return binv_kernel_launch(ctx, q, prog, kernel, args, BINV_NARGS(args), 3, gws, lws, nwait,
                              wait, ev);
}

static binv_status launch_reduce(binv_context *ctx, cl_command_queue q, cl_program prog,
                                 const gemm_args *x, cl_uint nchunks, cl_mem ws, cl_uint nwait,
                                 const cl_event *wait, cl_event *ev) {
    cl_uint m = (cl_uint)x->m, n = (cl_uint)x->n;
    const binv_arg args[] = {BINV_ARG(m),      BINV_ARG(n),    BINV_ARG(nchunks),
                             BINV_ARG(x->alpha), BINV_ARG(x->beta), BINV_ARG(ws),
                             BINV_ARG(x->c),   BINV_ARG(x->c_off), BINV_ARG(x->ldc)};
    size_t lws[2] = {64, 1};
    size_t gws[2] = {binv_ceil_div(x->n, 64) * 64, x->m};
    return binv_kernel_launch(ctx, q, prog, "gemm_reduce", args, BINV_NARGS(args), 2, gws, lws,
                              nwait, wait, ev);
}

/* Chunk length for this call.  Invariant: binv_gemm_chunk_size (k, dtype).
 * Adaptive: what a throughput-tuned library does — split K only when the
 * output tiles cannot fill the device, into as many equal pieces as fill it;
 * the split (and so the rounding) then depends on m, n and the device. */
static size_t chunk_for_call(const binv_context *ctx, const gemm_config *g, const gemm_args *x) {
    if (ctx->schedule == BINV_SCHEDULE_INVARIANT) return binv_gemm_chunk_size(x->dtype, x->k);
    size_t k = x->k ? x->k : 1;
    size_t tiles = binv_ceil_div(x->m, g->bm) * binv_ceil_div(x->n, g->bn);
    size_t want = 2 * (size_t)ctx->info.compute_units;
    if (tiles >= want) return k;
    size_t splits = binv_ceil_div(want, tiles);
    size_t max_splits = binv_ceil_div(k, 128); /* pieces of at least ~128 */
    if (splits > max_splits) splits = max_splits;
    if (splits < 1) splits = 1;
    return binv_ceil_div(k, splits);
}

/* The path of a call (binv_gemm_path; forced by BINV_GEMM_PATH). */
static binv_gemm_path choose_path(const binv_context *ctx, const gemm_config *g,
                                  const gemm_args *x, size_t kc, size_t nchunks) {
    /* Which kernels run: a choice of speed only, every path computes the
     * same schedule.  Split along the chunk boundaries when the C tiles alone
     * cannot fill the device. */
    binv_gemm_path path = ctx->tuning.gemm_path;
    const size_t m = x->m, n = x->n, k = x->k;
    /* gemm_stream reads the weights as 16-byte vectors: B K-contiguous, its
     * offset, row stride, k and the chunk length multiples of the vector
     * width (so every vector is whole, inside one chunk and 16-byte aligned:
     * buffer bases are at least 128-bit aligned on conforming devices).  It
     * is the GPU choice for small m (docs/tuning.md); on CPUs gemm_skinny
     * stays the automatic choice. */
    const size_t vw = x->dtype == BINV_DTYPE_F32 ? 4 : 8;
    const int stream_ok = x->sbp == 1 && x->b_off % vw == 0 && x->sbj % vw == 0 &&
                          kc % vw == 0 && k % vw == 0;
    if (path == BINV_GEMM_PATH_AUTO) {
        size_t tiles = binv_ceil_div(m, g->bm) * binv_ceil_div(n, g->bn);
        if (nchunks > 1 && tiles < 2 * (size_t)ctx->info.compute_units)
            path = m > small_m_limit(ctx) ? BINV_GEMM_PATH_SPLITK
                   : stream_ok && (ctx->info.type & CL_DEVICE_TYPE_GPU) ? BINV_GEMM_PATH_STREAM
                                                                        : BINV_GEMM_PATH_SKINNY;
        else
            path = BINV_GEMM_PATH_TILED;
    }
    if (path == BINV_GEMM_PATH_STREAM && !stream_ok) path = BINV_GEMM_PATH_SKINNY;
    if (k == 0) path = BINV_GEMM_PATH_SPLITK; /* reduce kernel alone: C = beta*C + alpha*0 */
    return path;
}

/* The split-K paths (skinny, stream, splitk; path != TILED): partials of
 * every chunk in a workspace, combined in chunk order by the tile's last
 * work-group (one launch) or by gemm_reduce (two). */
static binv_status run_split(binv_context *ctx, cl_command_queue queue, cl_program prog,
                             const gemm_config *g, const gemm_args *x, binv_gemm_path path,
                             size_t kc, size_t nchunks, cl_uint num_events,
                             const cl_event *wait_list, cl_event *event) {
    const size_t m = x->m, n = x->n, k = x->k, vw = x->dtype == BINV_DTYPE_F32 ? 4 : 8;
    binv_workspace *wsh;
    cl_mem ws;
    binv_status st = BINV_SUCCESS;
    size_t ws_bytes, mn4;
    BINV_RETURN_ERROR_ON(!binv_mul3_size(m, n, sizeof(float), &mn4) ||
                             !binv_mul_add_size(nchunks, mn4, 0, &ws_bytes),
                         ctx, BINV_ERROR_INVALID_DIMENSION, "binv_gemm: split-K workspace overflows");
    if ((st = binv_workspace_acquire(ctx, queue, ws_bytes, &wsh, &ws)) != BINV_SUCCESS) return st;
    /* Small m: one launch where the queue is in order (the workspace and its
     * counters are then this queue's): the tile's last group combines the
     * partials.  Otherwise (split-K gemm_tiled, or BINV_GEMM_FUSE=0)
     * gemm_reduce does, in a second launch; the sums are the same. */
    cl_mem cnt = NULL;
    if (ctx->gemm_fuse && wsh && k > 0 && path != BINV_GEMM_PATH_SPLITK) {
        const size_t tiles = path == BINV_GEMM_PATH_SKINNY
                                 ? binv_ceil_div(m, g->smr) * binv_ceil_div(n, g->sn)
                                 : binv_ceil_div(m, g->tr) * binv_ceil_div(n, g->tn);
        st = binv_workspace_counters(ctx, wsh, tiles, &cnt);
    }
    /* All or nothing for C: in two launches the first writes only the
     * workspace (partials) and gemm_reduce alone writes C, so an error at
     * any step leaves C untouched; one-launch paths write C in one command. */
    cl_event mid = NULL;
    if (k > 0 && st == BINV_SUCCESS) {
        cl_event *ev = cnt ? event : &mid; /* the fused kernel is the call's last command */
        if (path == BINV_GEMM_PATH_SKINNY) {
            /* Vector loads of B need K-contiguous rows starting 16-byte
             * aligned: the buffer base is aligned (CL_DEVICE_MEM_BASE_ADDR_ALIGN
             * >= 128 bits on every conforming device), so the offset, the row
             * stride and the chunk and step starts must be multiples of the
             * vector width. */
            const cl_uint bvec = x->sbp == 1 && x->b_off % vw == 0 && x->sbj % vw == 0 &&
                                 kc % vw == 0 && g->sk % vw == 0;
            st = launch_small(ctx, queue, prog, "gemm_skinny", g->sn, g->smr, g->sn, bvec, x,
                              (cl_uint)kc, (cl_uint)nchunks, ws, cnt, num_events, wait_list, ev);
        } else if (path == BINV_GEMM_PATH_STREAM) {
            st = launch_small(ctx, queue, prog, "gemm_stream", g->tn / g->nc, g->tr, g->tn, 1, x,
                              (cl_uint)kc, (cl_uint)nchunks, ws, cnt, num_events, wait_list, ev);
        }
        else
            st = launch_tiled(ctx, queue, prog, g, x, 1, (cl_uint)kc, (cl_uint)nchunks, ws,
                              num_events, wait_list, ev);
    }
    if (st == BINV_SUCCESS && !cnt) {
        /* Chain through the event so that out-of-order queues keep the order. */
        if (mid)
            st = launch_reduce(ctx, queue, prog, x, (cl_uint)nchunks, ws, 1, &mid, event);
        else
            st = launch_reduce(ctx, queue, prog, x, (cl_uint)nchunks, ws, num_events, wait_list,
                               event);
    }
    if (mid) clReleaseEvent(mid);
    binv_workspace_release(ctx, wsh, ws);
    return st;
}

binv_status binv_gemm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                      binv_transpose trans_a, binv_transpose trans_b, size_t m, size_t n,
                      size_t k, float alpha, cl_mem a, size_t a_offset, size_t lda, cl_mem b,
                      size_t b_offset, size_t ldb, float beta, cl_mem c, size_t c_offset,
                      size_t ldc, cl_uint num_events, const cl_event *wait_list,
                      cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    binv_clear_error(ctx);
    if (event) *event = NULL;
    binv_status st = validate(ctx, queue, dtype, trans_a, trans_b, m, n, k, a, a_offset, lda, b,
                              b_offset, ldb, beta, c, c_offset, ldc, num_events, wait_list);
    if (st != BINV_SUCCESS) return st;
    if (m == 0 || n == 0) {
        /* BLAS quick return.  Still honour the event contract. */
        return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    }

    if (ctx->path == BINV_PATH_NATIVE && dtype != BINV_DTYPE_F32 && trans_a == BINV_NO_TRANS &&
        trans_b == BINV_TRANS)
        return binv_gemm_native(ctx, queue, dtype, m, n, k, alpha, a, a_offset, lda, b, b_offset,
                                ldb, beta, c, c_offset, ldc, num_events, wait_list, event);

    const gemm_args x = {.dtype = dtype, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
                         .a = a, .b = b, .c = c, .a_off = a_offset, .b_off = b_offset,
                         .c_off = c_offset, .ldc = ldc,
                         .sai = trans_a == BINV_NO_TRANS ? lda : 1,
                         .sap = trans_a == BINV_NO_TRANS ? 1 : lda,
                         .sbp = trans_b == BINV_NO_TRANS ? ldb : 1,
                         .sbj = trans_b == BINV_NO_TRANS ? 1 : ldb};

    gemm_config g = pick_config(ctx, dtype, m, n);
    char defines[256];
    snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d -DBM=%u -DBN=%u -DBK=%u -DRM=%u -DRN=%u "
             "-DSN=%u -DSMR=%u -DSK=%u -DTN=%u -DTR=%u -DNC=%u -DTV=%u -DTGLOB=%u -DBINV_FENCE=%d",
             (int)dtype, g.bm, g.bn, g.bk, g.rm, g.rn, g.sn, g.smr, g.sk, g.tn, g.tr, g.nc, g.tv,
             g.tglob, ctx->fence);
    cl_program prog;
    if ((st = binv_program_get(ctx, "gemm", binv_cl_gemm, defines, &prog)) != BINV_SUCCESS)
        return st;

    size_t kc = chunk_for_call(ctx, &g, &x);
    size_t nchunks = k ? binv_ceil_div(k, kc) : 0;

    const binv_gemm_path path = choose_path(ctx, &g, &x, kc, nchunks);
    binv_debug(ctx, "gemm %s m=%zu n=%zu k=%zu kc=%zu chunks=%zu path=%d", binv_dtype_name(dtype),
               m, n, k, kc, nchunks, (int)path);

    binv_workspace *wsh;
    cl_mem ws;
    if (path == BINV_GEMM_PATH_TILED) {
        if (!g.tglob || nchunks < 2)
            return launch_tiled(ctx, queue, prog, &g, &x, 0, (cl_uint)kc, (cl_uint)nchunks, NULL,
                                num_events, wait_list, event);
        /* The running totals live in an m x n f32 workspace. */
        size_t t_bytes;
        BINV_RETURN_ERROR_ON(!binv_mul3_size(m, n, sizeof(float), &t_bytes), ctx,
                             BINV_ERROR_INVALID_DIMENSION, "binv_gemm: workspace overflows");
        if ((st = binv_workspace_acquire(ctx, queue, t_bytes, &wsh, &ws)) != BINV_SUCCESS)
            return st;
        st = launch_tiled(ctx, queue, prog, &g, &x, 0, (cl_uint)kc, (cl_uint)nchunks, ws,
                          num_events, wait_list, event);
        binv_workspace_release(ctx, wsh, ws);
        return st;
    }

    return run_split(ctx, queue, prog, &g, &x, path, kc, nchunks, num_events, wait_list, event);
}
