/* Elementwise activations: binv_swiglu.  Kernel: cl/activation.cl. */
#include <stdio.h>

#include "internal.h"


binv_status binv_swiglu(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t rows,
                        size_t cols, cl_mem gate, size_t gate_offset, size_t ldg, cl_mem up,
                        size_t up_offset, size_t ldu, cl_mem y, size_t y_offset, size_t ldy,
                        cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const char *fn = "binv_swiglu";
    binv_clear_error(ctx);
    if (event) *event = NULL;
    binv_status st;
    BINV_RETURN_ERROR_ON(binv_dtype_size(dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "%s: dtype %d is not a binv_dtype", fn, (int)dtype);
    if ((st = binv_check_queue(ctx, queue)) != BINV_SUCCESS) return st;
    if ((st = binv_check_wait_list(ctx, num_events, wait_list)) != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(rows > 0x7fffffff || cols > 0x7fffffff, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: rows=%zu cols=%zu: each must be below 2^31", fn, rows, cols);
    BINV_RETURN_ERROR_ON(ldg < cols || ldu < cols || ldy < cols, ctx,
                         BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: ldg=%zu ldu=%zu ldy=%zu must be >= cols=%zu", fn, ldg, ldu, ldy, cols);
    size_t eg = 0, eu = 0, ey = 0;
    if (rows && cols)
        BINV_RETURN_ERROR_ON(!binv_mul_add_size(rows - 1, ldg, cols, &eg) ||
                                 !binv_mul_add_size(rows - 1, ldu, cols, &eu) ||
                                 !binv_mul_add_size(rows - 1, ldy, cols, &ey),
                             ctx, BINV_ERROR_INVALID_DIMENSION, "%s: extents overflow", fn);
    const size_t es = binv_dtype_size(dtype);
    if ((st = binv_check_buffer(ctx, gate, gate_offset, eg, es, "gate")) != BINV_SUCCESS) return st;
    if ((st = binv_check_buffer(ctx, up, up_offset, eu, es, "up")) != BINV_SUCCESS) return st;
    if ((st = binv_check_buffer(ctx, y, y_offset, ey, es, "y")) != BINV_SUCCESS) return st;
    /* Views resolved through sub-buffers.  y may be gate or up itself (the
     * same elements in the same layout); otherwise no shared byte, exactly
     * for one row stride (interleaved views such as y = gate with up the
     * other half of [gate | up] rows are fine), whole extents otherwise. */
    const size_t vr = cols ? rows : 0;
    binv_view vg, vu, vy;
    if ((st = binv_view_of(ctx, gate, gate_offset, vr, cols, ldg, es, BINV_ACCESS_READ, "gate",
                           &vg)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, up, up_offset, vr, cols, ldu, es, BINV_ACCESS_READ, "up", &vu)) !=
            BINV_SUCCESS ||
        (st = binv_view_of(ctx, y, y_offset, vr, cols, ldy, es, BINV_ACCESS_WRITE, "y", &vy)) !=
            BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON((!binv_view_same(&vy, &vg) && binv_view_overlap(&vy, &vg)) ||
                             (!binv_view_same(&vy, &vu) && binv_view_overlap(&vy, &vu)),
                         ctx, BINV_ERROR_ALIASING,
                         "%s: y partially overlaps gate or up (in place needs the same view)", fn);
    if (rows == 0 || cols == 0)
        return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    cl_program prog;
    if ((st = binv_program_get_dtype(ctx, "activation", binv_cl_activation, dtype, &prog)) !=
        BINV_SUCCESS)
        return st;
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_ulong go = gate_offset, lg = ldg, uo = up_offset, lu = ldu, yo = y_offset, ly = ldy;
    const binv_arg args[] = {BINV_ARG(r),  BINV_ARG(c),  BINV_ARG(gate), BINV_ARG(go),
                             BINV_ARG(lg), BINV_ARG(up), BINV_ARG(uo),   BINV_ARG(lu),
                             BINV_ARG(y),  BINV_ARG(yo), BINV_ARG(ly)};
    const size_t lws[2] = {64, 1}, gws[2] = {(cols + 63) / 64 * 64, rows};
    return binv_kernel_launch(ctx, queue, prog, "act_swiglu", args, BINV_NARGS(args), 2, gws, lws,
                              num_events, wait_list, event);
}
