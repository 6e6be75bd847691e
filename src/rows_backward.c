/* Backward of the row reductions: binv_rmsnorm_backward.
 * Kernels and their reduction order: cl/rows_backward.cl; schedule:
 * docs/schedules.md ("RMSNorm backward"). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Row chunk of dweight's reduction over rows (RB in cl/rows_backward.cl):
 * part of the bits' contract, a constant of the library. */
#define RMSBWD_RB 64
#define RMSBWD_G 4 /* chunks of a row side by side in rmsbwd_rows (work-group 32 * G) */
#define RMSBWD_LWS 64 /* work-group of the per-column kernels */

size_t binv_rmsnorm_backward_rows_chunk(void) { return RMSBWD_RB; }

typedef struct rmsbwd_call {
    binv_dtype dtype;
    size_t rows, cols;
    cl_mem x, w, dy, dx, dw;
    size_t x_off, ldx, w_off, dy_off, lddy, dx_off, lddx, dw_off;
    float eps;
    int accumulate;
} rmsbwd_call;

/* Every argument in order, each with its own status and message. */
static binv_status validate(binv_context *ctx, cl_command_queue queue, const rmsbwd_call *c,
                            cl_uint num_events, const cl_event *wait_list) {
    const char *fn = "binv_rmsnorm_backward";
    binv_status st;
    if ((st = binv_rows_check_shape(ctx, fn, queue, c->dtype, c->rows, c->cols, num_events,
                                    wait_list)) != BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON(!(c->eps >= 0.0f) || isinf(c->eps), ctx, BINV_ERROR_INVALID_VALUE,
                         "%s: eps must be finite and >= 0 (got %g)", fn, (double)c->eps);
    BINV_RETURN_ERROR_ON(c->ldx < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: ldx=%zu is smaller than cols=%zu", fn, c->ldx, c->cols);
    BINV_RETURN_ERROR_ON(c->lddy < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: lddy=%zu is smaller than cols=%zu", fn, c->lddy, c->cols);
    BINV_RETURN_ERROR_ON(c->lddx < c->cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: lddx=%zu is smaller than cols=%zu", fn, c->lddx, c->cols);
    const size_t es = binv_dtype_size(c->dtype);
    size_t ext_x = 0, ext_dy = 0, ext_dx = 0;
    int ok = 1;
    if (c->rows) {
        ok &= binv_mul_add_size(c->rows - 1, c->ldx, c->cols, &ext_x);
        ok &= binv_mul_add_size(c->rows - 1, c->lddy, c->cols, &ext_dy);
        ok &= binv_mul_add_size(c->rows - 1, c->lddx, c->cols, &ext_dx);
    }
    BINV_RETURN_ERROR_ON(!ok, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: matrix extents overflow size_t (rows=%zu cols=%zu)", fn, c->rows,
                         c->cols);
    if ((st = binv_check_buffer(ctx, c->x, c->x_off, ext_x, es, "x")) != BINV_SUCCESS ||
        (st = binv_check_buffer(ctx, c->w, c->w_off, c->cols, es, "weight")) != BINV_SUCCESS ||
        (st = binv_check_buffer(ctx, c->dy, c->dy_off, ext_dy, es, "dy")) != BINV_SUCCESS ||
        (st = binv_check_buffer(ctx, c->dx, c->dx_off, ext_dx, es, "dx")) != BINV_SUCCESS ||
        (st = binv_check_buffer(ctx, c->dw, c->dw_off, c->cols, 4, "dweight")) != BINV_SUCCESS)
        return st;
    /* Views resolved through sub-buffers.  dweight is written (and read when
     * accumulating) whenever cols > 0, even for rows == 0 (it is then set to
     * 0, or left as it is); the weight is read only when rows > 0. */
    const size_t vr = c->cols ? c->rows : 0;
    binv_view vx, vw, vdy, vdx, vdw;
    if ((st = binv_view_of(ctx, c->x, c->x_off, vr, c->cols, c->ldx, es, BINV_ACCESS_READ, "x",
                           &vx)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, c->w, c->w_off, c->rows ? 1 : 0, c->cols, c->cols, es,
                           BINV_ACCESS_READ, "weight", &vw)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, c->dy, c->dy_off, vr, c->cols, c->lddy, es, BINV_ACCESS_READ,
                           "dy", &vdy)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, c->dx, c->dx_off, vr, c->cols, c->lddx, es, BINV_ACCESS_WRITE,
                           "dx", &vdx)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, c->dw, c->dw_off, 1, c->cols, c->cols, 4,
                           BINV_ACCESS_WRITE | (c->accumulate ? BINV_ACCESS_READ : 0), "dweight",
                           &vdw)) != BINV_SUCCESS)
        return st;
    /* dx may be x or dy itself (the same elements in the same layout: each
     * element is read before the same work-item writes it), never a shifted
     * view of either; nothing written may overlap the weight, and dweight
     * shares no byte with any other argument. */
    BINV_RETURN_ERROR_ON(!binv_view_same(&vdx, &vx) && binv_view_overlap(&vdx, &vx), ctx,
                         BINV_ERROR_ALIASING,
                         "%s: dx partially overlaps x (in place needs the same offset and ld)", fn);
    BINV_RETURN_ERROR_ON(!binv_view_same(&vdx, &vdy) && binv_view_overlap(&vdx, &vdy), ctx,
                         BINV_ERROR_ALIASING,
                         "%s: dx partially overlaps dy (in place needs the same offset and ld)",
                         fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vdx, &vw), ctx, BINV_ERROR_ALIASING,
                         "%s: dx overlaps the weight", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vdw, &vx) || binv_view_overlap(&vdw, &vdy) ||
                             binv_view_overlap(&vdw, &vw) || binv_view_overlap(&vdw, &vdx),
                         ctx, BINV_ERROR_ALIASING,
                         "%s: dweight overlaps x, dy, the weight or dx", fn);
    return BINV_SUCCESS;
}

static binv_status run(binv_context *ctx, cl_command_queue queue, const rmsbwd_call *c,
                       cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    const char *fn = "binv_rmsnorm_backward";
    binv_status st = validate(ctx, queue, c, num_events, wait_list);
    if (st != BINV_SUCCESS) return st;
    /* Nothing to compute: rows == 0 leaves dweight as it is when
     * accumulating (an empty sum), else sets it to 0 (below). */
    if (c->cols == 0 || (c->rows == 0 && c->accumulate))
        return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    const size_t nchunks = binv_ceil_div(c->rows, RMSBWD_RB);
    size_t part, ws_bytes;
    BINV_RETURN_ERROR_ON(!binv_mul_add_size(nchunks, c->cols, 2 * c->rows, &part) ||
                             !binv_mul_add_size(part, sizeof(float), 0, &ws_bytes),
                         ctx, BINV_ERROR_INVALID_DIMENSION, "%s: workspace overflows", fn);
    char defines[48];
    snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d -DG=%d", (int)c->dtype, RMSBWD_G);
    cl_program prog;
    if ((st = binv_program_get(ctx, "rows_backward", binv_cl_rows_backward, defines, &prog)) !=
        BINV_SUCCESS)
        return st;
    binv_debug(ctx, "%s rows=%zu cols=%zu row chunks=%zu", fn, c->rows, c->cols, nchunks);
    cl_uint rows = (cl_uint)c->rows, cols = (cl_uint)c->cols, nch = (cl_uint)nchunks;
    cl_uint acc = c->accumulate ? 1u : 0u;
    cl_ulong xo = c->x_off, ldx = c->ldx, wo = c->w_off, dyo = c->dy_off, lddy = c->lddy,
             dxo = c->dx_off, lddx = c->lddx, dwo = c->dw_off, poff = 2 * (cl_ulong)c->rows;
    float eps = c->eps;
    binv_workspace *wsh;
    cl_mem ws;
    if ((st = binv_workspace_acquire(ctx, queue, ws_bytes, &wsh, &ws)) != BINV_SUCCESS) return st;
    const binv_arg rargs[] = {BINV_ARG(rows), BINV_ARG(cols), BINV_ARG(c->x), BINV_ARG(xo),
                              BINV_ARG(ldx),  BINV_ARG(c->w), BINV_ARG(wo), BINV_ARG(eps),
                              BINV_ARG(c->dy), BINV_ARG(dyo), BINV_ARG(lddy), BINV_ARG(ws)};
    const binv_arg pargs[] = {BINV_ARG(rows), BINV_ARG(cols), BINV_ARG(c->x), BINV_ARG(xo),
                              BINV_ARG(ldx),  BINV_ARG(c->dy), BINV_ARG(dyo), BINV_ARG(lddy),
                              BINV_ARG(ws),   BINV_ARG(poff)};
    const binv_arg aargs[] = {BINV_ARG(rows), BINV_ARG(cols),  BINV_ARG(nch),  BINV_ARG(c->x),
                              BINV_ARG(xo),   BINV_ARG(ldx),   BINV_ARG(c->w), BINV_ARG(wo),
                              BINV_ARG(c->dy), BINV_ARG(dyo),  BINV_ARG(lddy), BINV_ARG(c->dx),
                              BINV_ARG(dxo),  BINV_ARG(lddx),  BINV_ARG(c->dw), BINV_ARG(dwo),
                              BINV_ARG(acc),  BINV_ARG(ws),    BINV_ARG(poff)};
    const size_t rlws[2] = {32 * RMSBWD_G, 1}, rgws[2] = {32 * RMSBWD_G, c->rows};
    const size_t clws[2] = {RMSBWD_LWS, 1},
                 cgws[2] = {binv_ceil_div(c->cols, RMSBWD_LWS) * RMSBWD_LWS,
                            nchunks ? nchunks : 1};
    const binv_launch seq[3] = {
        {.name = "rmsbwd_rows", .args = rargs, .nargs = BINV_NARGS(rargs), .dims = 2,
         .gws = rgws, .lws = rlws},
        {.name = "rmsbwd_partials", .args = pargs, .nargs = BINV_NARGS(pargs), .dims = 2,
         .gws = cgws, .lws = clws},
        {.name = "rmsbwd_apply", .args = aargs, .nargs = BINV_NARGS(aargs), .dims = 2,
         .gws = cgws, .lws = clws}};
    /* rows == 0 (not accumulating): rmsbwd_apply alone, which sets dweight
     * to 0.  One row chunk: rmsbwd_rows and rmsbwd_apply, which sums S_0
     * itself (the same bits).  Otherwise all three.  Every kernel is
     * prepared before the first is enqueued, and only rmsbwd_apply writes
     * the outputs, so an error leaves dx and dweight untouched. */
    const binv_launch one[2] = {seq[0], seq[2]};
    if (c->rows == 0)
        st = binv_kernel_launch_seq(ctx, queue, prog, 1, seq + 2, num_events, wait_list, event);
    else if (nchunks == 1)
        st = binv_kernel_launch_seq(ctx, queue, prog, 2, one, num_events, wait_list, event);
    else
        st = binv_kernel_launch_seq(ctx, queue, prog, 3, seq, num_events, wait_list, event);
    binv_workspace_release(ctx, wsh, ws);
    return st;
}

binv_status binv_rmsnorm_backward(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                  size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                                  cl_mem weight, size_t weight_offset, float eps, cl_mem dy,
                                  size_t dy_offset, size_t lddy, cl_mem dx, size_t dx_offset,
                                  size_t lddx, cl_mem dweight, size_t dweight_offset,
                                  int accumulate, cl_uint num_events, const cl_event *wait_list,
                                  cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    binv_clear_error(ctx);
    if (event) *event = NULL;
    const rmsbwd_call c = {.dtype = dtype, .rows = rows, .cols = cols, .x = x, .w = weight,
                           .dy = dy, .dx = dx, .dw = dweight, .x_off = x_offset, .ldx = ldx,
                           .w_off = weight_offset, .dy_off = dy_offset, .lddy = lddy,
                           .dx_off = dx_offset, .lddx = lddx, .dw_off = dweight_offset,
                           .eps = eps, .accumulate = accumulate};
    return run(ctx, queue, &c, num_events, wait_list, event);
}
