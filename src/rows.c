/* Row reductions: binv_rmsnorm, binv_add_rmsnorm, binv_layernorm,
 * binv_softmax, binv_log_softmax, binv_selected_log_softmax, binv_row_sum,
 * binv_row_mean.
 * Kernels and their reduction order: cl/rows.cl; schedule: docs/schedules.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Matches the OP_* codes of cl/rows.cl. */
enum {
    OP_SUM = 0, OP_MEAN, OP_RMSNORM, OP_ADD_RMSNORM, OP_LAYERNORM, OP_SOFTMAX, OP_LOG_SOFTMAX,
    OP_SEL_LOG_SOFTMAX
};
static const char *const OP_NAME[] = {"binv_row_sum", "binv_row_mean", "binv_rmsnorm",
                                      "binv_add_rmsnorm", "binv_layernorm", "binv_softmax",
                                      "binv_log_softmax", "binv_selected_log_softmax"};

/* The invariant chunk width of a row: a function of nothing but the library
 * (the same for every cols and dtype).  Part of the bits' contract. */
#define BINV_ROWS_CW 1024
#define ROWS_G 4 /* chunks per work-group side by side; work-group = 32 * G */

size_t binv_rows_chunk_size(binv_dtype dtype, size_t cols) {
    if (binv_dtype_size(dtype) == 0) return 0;
    (void)cols;
    return BINV_ROWS_CW;
}

typedef struct rows_call {
    int op;
    binv_dtype dtype;
    size_t rows, cols;
    cl_mem x, r, w, b, y, out, ids;
    size_t x_off, ldx, r_off, ldr, w_off, b_off, y_off, ldy, out_off, ids_off;
    float eps;
} rows_call;

/* Ops that write a rows x cols y; the others write one f32 per row to out. */
static int has_y(int op) { return op != OP_SUM && op != OP_MEAN && op != OP_SEL_LOG_SOFTMAX; }


/* The first checks of every row op and of its backward (internal.h). */
binv_status binv_rows_check_shape(binv_context *ctx, const char *fn, cl_command_queue queue,
                                  binv_dtype dtype, size_t rows, size_t cols, cl_uint num_events,
                                  const cl_event *wait_list) {
    binv_status st;
    BINV_RETURN_ERROR_ON(binv_dtype_size(dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "%s: dtype %d is not a binv_dtype", fn, (int)dtype);
    if ((st = binv_check_queue(ctx, queue)) != BINV_SUCCESS) return st;
    if ((st = binv_check_wait_list(ctx, num_events, wait_list)) != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(cols == 0 && rows != 0, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: cols is 0 (a reduction over nothing)", fn);
    BINV_RETURN_ERROR_ON(rows > 0x7fffffff || cols > 0x7fffffff, ctx,
                         BINV_ERROR_INVALID_DIMENSION,
                         "%s: rows=%zu cols=%zu: each must be below 2^31", fn, rows, cols);
    return BINV_SUCCESS;
}

/* Over 100 lines on purpose: the checks of every argument in order, each
 * with its own status and message, read top to bottom as one list. */
static binv_status validate(binv_context *ctx, cl_command_queue queue, const rows_call *c,
                            cl_uint num_events, const cl_event *wait_list) {
    const char *fn = OP_NAME[c->op];
    binv_status st;
    if ((st = binv_rows_check_shape(ctx, fn, queue, c->dtype, c->rows, c->cols, num_events,
                                    wait_list)) != BINV_SUCCESS)
        return st;
    if (c->op == OP_RMSNORM || c->op == OP_ADD_RMSNORM || c->op == OP_LAYERNORM)
        BINV_RETURN_ERROR_ON(!(c->eps >= 0.0f) || isinf(c->eps), ctx, BINV_ERROR_INVALID_VALUE,
                             "%s: eps must be finite and >= 0 (got %g)", fn, (double)c->eps);
    BINV_RETURN_ERROR_ON(c->ldx < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: ldx=%zu is smaller than cols=%zu", fn, c->ldx, c->cols);
    if (has_y(c->op))
        BINV_RETURN_ERROR_ON(c->ldy < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                             "%s: ldy=%zu is smaller than cols=%zu", fn, c->ldy, c->cols);
    if (c->op == OP_ADD_RMSNORM)
        BINV_RETURN_ERROR_ON(c->ldr < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                             "%s: ldr=%zu is smaller than cols=%zu", fn, c->ldr, c->cols);
    const size_t es = binv_dtype_size(c->dtype);
    size_t ext_x = 0, ext_y = 0, ext_r = 0;
    int ok = 1;
    if (c->rows) {
        ok &= binv_mul_add_size(c->rows - 1, c->ldx, c->cols, &ext_x);
        if (has_y(c->op)) ok &= binv_mul_add_size(c->rows - 1, c->ldy, c->cols, &ext_y);
        if (c->op == OP_ADD_RMSNORM) ok &= binv_mul_add_size(c->rows - 1, c->ldr, c->cols, &ext_r);
    }
    BINV_RETURN_ERROR_ON(!ok, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: matrix extents overflow size_t (rows=%zu cols=%zu)", fn, c->rows,
                         c->cols);
    if ((st = binv_check_buffer(ctx, c->x, c->x_off, ext_x, es, "x")) != BINV_SUCCESS) return st;
    if (has_y(c->op) &&
        (st = binv_check_buffer(ctx, c->y, c->y_off, ext_y, es, "y")) != BINV_SUCCESS)
        return st;
    if (c->op == OP_ADD_RMSNORM &&
        (st = binv_check_buffer(ctx, c->r, c->r_off, ext_r, es, "residual")) != BINV_SUCCESS)
        return st;
    if ((c->op == OP_RMSNORM || c->op == OP_ADD_RMSNORM || c->op == OP_LAYERNORM) &&
        (st = binv_check_buffer(ctx, c->w, c->w_off, c->cols, es,
                                c->op == OP_LAYERNORM ? "gamma" : "weight")) != BINV_SUCCESS)
        return st;
    if (c->op == OP_LAYERNORM &&
        (st = binv_check_buffer(ctx, c->b, c->b_off, c->cols, es, "beta")) != BINV_SUCCESS)
        return st;
    /* Views resolved through sub-buffers (byte ranges of the storage), so
     * that a sub-buffer sharing storage with another argument is seen. */
    const int norm = c->op == OP_RMSNORM || c->op == OP_ADD_RMSNORM || c->op == OP_LAYERNORM;
    binv_view vx, vy, vr, vw, vb;
    if ((st = binv_view_of(ctx, c->x, c->x_off, c->rows, c->cols, c->ldx, es,
                           BINV_ACCESS_READ |
                               (c->op == OP_ADD_RMSNORM ? BINV_ACCESS_WRITE : 0),
                           "x", &vx)) != BINV_SUCCESS)
        return st;
    if (!has_y(c->op)) {
        if ((st = binv_check_buffer(ctx, c->out, c->out_off, c->rows, 4, "out")) != BINV_SUCCESS ||
            (st = binv_view_of(ctx, c->out, c->out_off, 1, c->rows, c->rows, 4, BINV_ACCESS_WRITE,
                               "out", &vy)) != BINV_SUCCESS)
            return st;
        BINV_RETURN_ERROR_ON(binv_view_overlap(&vy, &vx), ctx, BINV_ERROR_ALIASING,
                             "%s: out overlaps x", fn);
        if (c->op != OP_SEL_LOG_SOFTMAX) return BINV_SUCCESS;
        /* ids: one cl_uint per row, read (it may share storage with x, never
         * with out). */
        binv_view vi;
        if ((st = binv_check_buffer(ctx, c->ids, c->ids_off, c->rows, sizeof(cl_uint), "ids")) !=
                BINV_SUCCESS ||
            (st = binv_view_of(ctx, c->ids, c->ids_off, 1, c->rows, c->rows, sizeof(cl_uint),
                               BINV_ACCESS_READ, "ids", &vi)) != BINV_SUCCESS)
            return st;
        BINV_RETURN_ERROR_ON(binv_view_overlap(&vy, &vi), ctx, BINV_ERROR_ALIASING,
                             "%s: out overlaps ids", fn);
        return BINV_SUCCESS;
    }
    if ((st = binv_view_of(ctx, c->y, c->y_off, c->rows, c->cols, c->ldy, es, BINV_ACCESS_WRITE,
                           "y", &vy)) != BINV_SUCCESS)
        return st;
    memset(&vr, 0, sizeof vr);
    memset(&vw, 0, sizeof vw);
    memset(&vb, 0, sizeof vb);
    if (c->op == OP_ADD_RMSNORM &&
        (st = binv_view_of(ctx, c->r, c->r_off, c->rows, c->cols, c->ldr, es, BINV_ACCESS_READ,
                           "residual", &vr)) != BINV_SUCCESS)
        return st;
    /* The parameter vectors are read for every row: empty when rows == 0. */
    if (norm && (st = binv_view_of(ctx, c->w, c->w_off, c->rows ? 1 : 0, c->cols, c->cols, es,
                                   BINV_ACCESS_READ, c->op == OP_LAYERNORM ? "gamma" : "weight",
                                   &vw)) != BINV_SUCCESS)
        return st;
    if (c->op == OP_LAYERNORM &&
        (st = binv_view_of(ctx, c->b, c->b_off, c->rows ? 1 : 0, c->cols, c->cols, es,
                           BINV_ACCESS_READ, "beta", &vb)) != BINV_SUCCESS)
        return st;
    /* y may be x itself (the same elements in the same layout: in place),
     * never a shifted view of it; nothing written may overlap a parameter
     * vector or the residual. */
    BINV_RETURN_ERROR_ON(c->op != OP_ADD_RMSNORM && !binv_view_same(&vy, &vx) &&
                             binv_view_overlap(&vy, &vx),
                         ctx, BINV_ERROR_ALIASING,
                         "%s: y partially overlaps x (in place needs the same offset and ld)", fn);
    BINV_RETURN_ERROR_ON(c->op == OP_ADD_RMSNORM && binv_view_overlap(&vy, &vx), ctx,
                         BINV_ERROR_ALIASING,
                         "%s: y overlaps x (x receives x + residual, y the norm)", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vr, &vx) || binv_view_overlap(&vr, &vy), ctx,
                         BINV_ERROR_ALIASING, "%s: residual overlaps x or y", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vw, &vy) ||
                             (c->op == OP_ADD_RMSNORM && binv_view_overlap(&vw, &vx)),
                         ctx, BINV_ERROR_ALIASING, "%s: the weight overlaps an output", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vb, &vy), ctx, BINV_ERROR_ALIASING,
                         "%s: beta overlaps y", fn);
    return BINV_SUCCESS;
}

/* Chunk width for this call.  Invariant: fixed.  Adaptive (what a tuned
 * library does): at least one chunk per 1024 values, and more, smaller chunks
 * when there are too few rows to fill the device (split-K by row count) — so
 * the lanes' slices, and the rounding, change with the number of rows. */
static size_t chunk_for_call(const binv_context *ctx, const rows_call *c) {
    if (ctx->schedule == BINV_SCHEDULE_INVARIANT) return binv_rows_chunk_size(c->dtype, c->cols);
    const size_t want = 8 * (size_t)ctx->info.compute_units; /* work-groups to fill it */
    const size_t min_pieces = (c->cols + BINV_ROWS_CW - 1) / BINV_ROWS_CW;
    size_t pieces = c->rows >= want ? min_pieces : (want + c->rows - 1) / c->rows;
    if (pieces < min_pieces) pieces = min_pieces;
    if (pieces > 32 * min_pieces) pieces = 32 * min_pieces;
    size_t cw = (c->cols + pieces - 1) / pieces;
    return (cw + 31) / 32 * 32;
}

static binv_status enqueue(binv_context *ctx, cl_command_queue q, cl_program prog, int g,
                           const char *name, int stage, const rows_call *c, cl_uint cw,
                           cl_uint nchunks, cl_mem P, size_t groups_x, cl_uint nwait,
                           const cl_event *wait, cl_event *ev) {
    cl_uint op = (cl_uint)c->op, rows = (cl_uint)c->rows, cols = (cl_uint)c->cols;
    cl_ulong xo = c->x_off, ldx = c->ldx, ro = c->r_off, ldr = c->ldr, wo = c->w_off,
             bo = c->b_off, yo = c->y_off, ldy = c->ldy, oo = c->out_off, io = c->ids_off;
    /* Unused buffers are bound to x: every argument must be a valid cl_mem. */
    cl_mem r = c->r ? c->r : c->x, w = c->w ? c->w : c->x, b = c->b ? c->b : c->x;
    cl_mem y = c->y ? c->y : c->x, out = c->out ? c->out : P, ids = c->ids ? c->ids : c->x;
    cl_uint ustage = (cl_uint)stage;
    const binv_arg args[] = {
        BINV_ARG(ustage), BINV_ARG(op), BINV_ARG(rows), BINV_ARG(cols), BINV_ARG(cw),
        BINV_ARG(nchunks), BINV_ARG(c->x), BINV_ARG(xo), BINV_ARG(ldx), BINV_ARG(r),
        BINV_ARG(ro),     BINV_ARG(ldr), BINV_ARG(w),    BINV_ARG(wo),  BINV_ARG(b),
        BINV_ARG(bo),     BINV_ARG(c->eps), BINV_ARG(y), BINV_ARG(yo),  BINV_ARG(ldy),
        BINV_ARG(out),    BINV_ARG(oo), BINV_ARG(P),    BINV_ARG(ids), BINV_ARG(io)};
    const cl_uint first = stage < 0 ? 1 : 0; /* rows_fused and rows_apply take no stage */
    const size_t lws[2] = {32 * (size_t)g, 1}, gws[2] = {groups_x * lws[0], c->rows};
    return binv_kernel_launch(ctx, q, prog, name, args + first, BINV_NARGS(args) - first, 2, gws,
                              lws, nwait, wait, ev);
}

static binv_status rows_run(binv_context *ctx, cl_command_queue queue, rows_call *c,
                            cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    binv_clear_error(ctx);
    if (event) *event = NULL;
    binv_status st = validate(ctx, queue, c, num_events, wait_list);
    if (st != BINV_SUCCESS) return st;
    if (c->rows == 0) {
        return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    }
    const size_t cw = chunk_for_call(ctx, c);
    const size_t nchunks = (c->cols + cw - 1) / cw;
    const int two = c->op == OP_LAYERNORM; /* a second pass over the row (needs the mean) */
    size_t ws_bytes;
    BINV_RETURN_ERROR_ON(!binv_mul3_size(c->rows, nchunks, 2 * sizeof(float), &ws_bytes),
                         ctx, BINV_ERROR_INVALID_DIMENSION, "%s: workspace overflows",
                         OP_NAME[c->op]);
    /* Split a row across work-groups when the rows alone cannot fill the
     * device (who computes what only: the chunk values are the same). */
    int split = nchunks > ROWS_G && c->rows < 2 * (size_t)ctx->info.compute_units;
    if (ctx->tuning.rows_path == 1) split = 0;
    if (ctx->tuning.rows_path == 2) split = 1;
    /* Rows of at most 32 chunks of <= 1024 values: the fused kernel keeps the
     * row in registers, one chunk per 32-item group (G = chunks rounded up to
     * a power of two, within the device's work-group limit). */
    int g_cached = 1;
    while (g_cached < (int)nchunks) g_cached *= 2;
    const int cached = !split && cw <= 1024 && nchunks <= 32 &&
                       (size_t)32 * g_cached <= ctx->info.max_work_group_size;
    /* Chunks per work-group otherwise: G side by side when a group owns a
     * whole row; one when a long row is spread over many groups. */
    const int g = cached ? g_cached : split ? 1 : ROWS_G;
    const size_t groups = (nchunks + g - 1) / g;
    char defines[64];
    /* GPUs: one program per op (the op switches folded away; PoCL keeps one
     * program for all ops, compile time matters more there). */
    const int opc = (ctx->info.type & CL_DEVICE_TYPE_GPU) ? c->op : -1;
    snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d -DG=%d -DOPC=%d", (int)c->dtype, g, opc);
    cl_program prog;
    if ((st = binv_program_get(ctx, "rows", binv_cl_rows, defines, &prog)) != BINV_SUCCESS)
        return st;
    binv_debug(ctx, "%s rows=%zu cols=%zu cw=%zu chunks=%zu %s", OP_NAME[c->op], c->rows, c->cols,
               cw, nchunks, split ? "split" : "fused");
    binv_workspace *wsh;
    cl_mem ws;
    if ((st = binv_workspace_acquire(ctx, queue, ws_bytes, &wsh, &ws)) != BINV_SUCCESS) return st;
    if (!split) {
        st = enqueue(ctx, queue, prog, g, cached ? "rows_fused_cached" : "rows_fused", -1, c,
                     (cl_uint)cw, (cl_uint)nchunks, ws, 1,
                     num_events, wait_list, event);
    } else {
        /* All or nothing for the outputs: rows_partials writes only the
         * workspace and rows_apply alone writes y (and x for add_rmsnorm), so
         * an error at any step leaves the outputs untouched. */
        cl_event e1 = NULL, e2 = NULL;
        st = enqueue(ctx, queue, prog, g, "rows_partials", 0, c, (cl_uint)cw, (cl_uint)nchunks, ws,
                     groups, num_events, wait_list, &e1);
        if (st == BINV_SUCCESS && two)
            st = enqueue(ctx, queue, prog, g, "rows_partials", 1, c, (cl_uint)cw, (cl_uint)nchunks,
                         ws, groups, 1, &e1, &e2);
        /* selected_log_softmax writes one value per row, from the work-group
         * of chunk 0: one work-group per row is enough. */
        if (st == BINV_SUCCESS)
            st = enqueue(ctx, queue, prog, g, "rows_apply", -1, c, (cl_uint)cw, (cl_uint)nchunks, ws,
                         c->op == OP_SEL_LOG_SOFTMAX ? 1 : groups, 1, e2 ? &e2 : &e1, event);
        if (e1) clReleaseEvent(e1);
        if (e2) clReleaseEvent(e2);
    }
    binv_workspace_release(ctx, wsh, ws);
    return st;
}

binv_status binv_rmsnorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t rows,
                         size_t cols, cl_mem x, size_t x_offset, size_t ldx, cl_mem weight,
                         size_t weight_offset, float eps, cl_mem y, size_t y_offset, size_t ldy,
                         cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_RMSNORM, .dtype = dtype, .rows = rows, .cols = cols, .x = x,
                   .w = weight, .y = y, .x_off = x_offset, .ldx = ldx, .w_off = weight_offset,
                   .y_off = y_offset, .ldy = ldy, .eps = eps};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_add_rmsnorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                             size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                             cl_mem residual, size_t residual_offset, size_t ldr, cl_mem weight,
                             size_t weight_offset, float eps, cl_mem y, size_t y_offset,
                             size_t ldy, cl_uint num_events, const cl_event *wait_list,
                             cl_event *event) {
    rows_call c = {.op = OP_ADD_RMSNORM, .dtype = dtype, .rows = rows, .cols = cols, .x = x,
                   .r = residual, .w = weight, .y = y, .x_off = x_offset, .ldx = ldx,
                   .r_off = residual_offset, .ldr = ldr, .w_off = weight_offset, .y_off = y_offset,
                   .ldy = ldy, .eps = eps};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_layernorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                           size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                           cl_mem gamma, size_t gamma_offset, cl_mem beta, size_t beta_offset,
                           float eps, cl_mem y, size_t y_offset, size_t ldy, cl_uint num_events,
                           const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_LAYERNORM, .dtype = dtype, .rows = rows, .cols = cols, .x = x,
                   .w = gamma, .b = beta, .y = y, .x_off = x_offset, .ldx = ldx,
                   .w_off = gamma_offset, .b_off = beta_offset, .y_off = y_offset, .ldy = ldy,
                   .eps = eps};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_softmax(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t rows,
                         size_t cols, cl_mem x, size_t x_offset, size_t ldx, cl_mem y,
                         size_t y_offset, size_t ldy, cl_uint num_events,
                         const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_SOFTMAX, .dtype = dtype, .rows = rows, .cols = cols, .x = x, .y = y,
                   .x_off = x_offset, .ldx = ldx, .y_off = y_offset, .ldy = ldy};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_log_softmax(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                             size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                             cl_mem y, size_t y_offset, size_t ldy, cl_uint num_events,
                             const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_LOG_SOFTMAX, .dtype = dtype, .rows = rows, .cols = cols, .x = x, .y = y,
                   .x_off = x_offset, .ldx = ldx, .y_off = y_offset, .ldy = ldy};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_selected_log_softmax(binv_context *ctx, cl_command_queue queue,
                                      binv_dtype dtype, size_t rows, size_t cols, cl_mem x,
                                      size_t x_offset, size_t ldx, cl_mem ids, size_t ids_offset,
                                      cl_mem out, size_t out_offset, cl_uint num_events,
                                      const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_SEL_LOG_SOFTMAX, .dtype = dtype, .rows = rows, .cols = cols, .x = x,
                   .out = out, .ids = ids, .x_off = x_offset, .ldx = ldx, .out_off = out_offset,
                   .ids_off = ids_offset};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_row_sum(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t rows,
                         size_t cols, cl_mem x, size_t x_offset, size_t ldx, cl_mem out,
                         size_t out_offset, cl_uint num_events, const cl_event *wait_list,
                         cl_event *event) {
    rows_call c = {.op = OP_SUM, .dtype = dtype, .rows = rows, .cols = cols, .x = x, .out = out,
                   .x_off = x_offset, .ldx = ldx, .out_off = out_offset};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}

binv_status binv_row_mean(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                          size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                          cl_mem out, size_t out_offset, cl_uint num_events,
                          const cl_event *wait_list, cl_event *event) {
    rows_call c = {.op = OP_MEAN, .dtype = dtype, .rows = rows, .cols = cols, .x = x, .out = out,
                   .x_off = x_offset, .ldx = ldx, .out_off = out_offset};
    return rows_run(ctx, queue, &c, num_events, wait_list, event);
}
