/* Elementwise activations: binv_swiglu, and the argument checks that it and
 * the backward ops (src/activation_backward.c) share.  Kernel:
 * cl/activation.cl. */
#include <stdio.h>

#include "activation.h"

binv_status binv_act_check(binv_context *ctx, const char *fn, cl_command_queue queue,
                           binv_dtype dtype, size_t rows, size_t cols, binv_act_mat *m, size_t n,
                           cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    binv_clear_error(ctx);
    if (event) *event = NULL;
    binv_status st;
    BINV_RETURN_ERROR_ON(binv_dtype_size(dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "%s: dtype %d is not a binv_dtype", fn, (int)dtype);
    if ((st = binv_check_queue(ctx, queue)) != BINV_SUCCESS) return st;
    if ((st = binv_check_wait_list(ctx, num_events, wait_list)) != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(rows > 0x7fffffff || cols > 0x7fffffff, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: rows=%zu cols=%zu: each must be below 2^31", fn, rows, cols);
    for (size_t i = 0; i < n; i++)
        BINV_RETURN_ERROR_ON(m[i].ld < cols, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                             "%s: the row stride of %s (%zu) must be >= cols=%zu", fn, m[i].name,
                             m[i].ld, cols);
    size_t ext[8] = {0};
    if (n > 8) return binv_set_error(ctx, BINV_ERROR_INVALID_ARGUMENT, "internal: %zu views", n);
    if (rows && cols)
        for (size_t i = 0; i < n; i++)
            BINV_RETURN_ERROR_ON(!binv_mul_add_size(rows - 1, m[i].ld, cols, &ext[i]), ctx,
                                 BINV_ERROR_INVALID_DIMENSION, "%s: extents overflow", fn);
    const size_t es = binv_dtype_size(dtype);
    for (size_t i = 0; i < n; i++)
        if ((st = binv_check_buffer(ctx, m[i].buf, m[i].off, ext[i], es, m[i].name)) !=
            BINV_SUCCESS)
            return st;
    const size_t vr = cols ? rows : 0;
    for (size_t i = 0; i < n; i++)
        if ((st = binv_view_of(ctx, m[i].buf, m[i].off, vr, cols, m[i].ld, es, m[i].access,
                               m[i].name, &m[i].view)) != BINV_SUCCESS)
            return st;
    return BINV_SUCCESS;
}

binv_status binv_swiglu(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t rows,
                        size_t cols, cl_mem gate, size_t gate_offset, size_t ldg, cl_mem up,
                        size_t up_offset, size_t ldu, cl_mem y, size_t y_offset, size_t ldy,
                        cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const char *fn = "binv_swiglu";
    binv_act_mat m[3] = {BINV_ACT_MAT("gate", gate, gate_offset, ldg, BINV_ACCESS_READ),
                         BINV_ACT_MAT("up", up, up_offset, ldu, BINV_ACCESS_READ),
                         BINV_ACT_MAT("y", y, y_offset, ldy, BINV_ACCESS_WRITE)};
    binv_status st = binv_act_check(ctx, fn, queue, dtype, rows, cols, m, 3, num_events,
                                    wait_list, event);
    if (st != BINV_SUCCESS) return st;
    /* Views resolved through sub-buffers.  y may be gate or up itself (the
     * same elements in the same layout); otherwise no shared byte, exactly
     * for one row stride (interleaved views such as y = gate with up the
     * other half of [gate | up] rows are fine), whole extents otherwise. */
    const binv_view *vg = &m[0].view, *vu = &m[1].view, *vy = &m[2].view;
    BINV_RETURN_ERROR_ON((!binv_view_same(vy, vg) && binv_view_overlap(vy, vg)) ||
                             (!binv_view_same(vy, vu) && binv_view_overlap(vy, vu)),
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
