/* Backward of the elementwise ops: binv_swiglu_backward and
 * binv_rope_backward.  Kernels: cl/activation_backward.cl (built after
 * cl/activation.cl, whose sigmoid it shares); formulas: docs/schedules.md.
 * The argument checks are the forward ops' own (binv_act_check,
 * binv_rope_run), so the two directions accept and reject the same calls. */
#include <stdio.h>

#include "activation.h"

binv_status binv_act_backward_program(binv_context *ctx, binv_dtype dtype, cl_program *out) {
    const binv_program_desc d = {.family = "activation_backward",
                                 .sources = {binv_cl_activation, binv_cl_activation_backward}};
    char defines[32];
    snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d", (int)dtype);
    return binv_program_get_desc(ctx, &d, defines, out);
}

binv_status binv_swiglu_backward(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                 size_t rows, size_t cols, cl_mem gate, size_t gate_offset,
                                 size_t ldg, cl_mem up, size_t up_offset, size_t ldu, cl_mem dy,
                                 size_t dy_offset, size_t lddy, cl_mem dgate, size_t dgate_offset,
                                 size_t lddg, cl_mem dup, size_t dup_offset, size_t lddu,
                                 cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const char *fn = "binv_swiglu_backward";
    binv_act_mat m[5] = {
        BINV_ACT_MAT("gate", gate, gate_offset, ldg, BINV_ACCESS_READ),
        BINV_ACT_MAT("up", up, up_offset, ldu, BINV_ACCESS_READ),
        BINV_ACT_MAT("dy", dy, dy_offset, lddy, BINV_ACCESS_READ),
        BINV_ACT_MAT("dgate", dgate, dgate_offset, lddg, BINV_ACCESS_WRITE),
        BINV_ACT_MAT("dup", dup, dup_offset, lddu, BINV_ACCESS_WRITE)};
    binv_status st = binv_act_check(ctx, fn, queue, dtype, rows, cols, m, 5, num_events,
                                    wait_list, event);
    if (st != BINV_SUCCESS) return st;
    /* Each element reads its gate, up and dy before it writes its dgate and
     * dup, so an output may be an input's own view (the same elements in the
     * same layout: in place); otherwise it shares no byte with an input
     * (exactly for one row stride, as binv_swiglu).  dgate and dup share no
     * byte (which write would land is not defined). */
    for (int o = 3; o < 5; o++)
        for (int i = 0; i < 3; i++)
            BINV_RETURN_ERROR_ON(!binv_view_same(&m[o].view, &m[i].view) &&
                                     binv_view_overlap(&m[o].view, &m[i].view),
                                 ctx, BINV_ERROR_ALIASING,
                                 "%s: %s partially overlaps %s (in place needs the same view)", fn,
                                 m[o].name, m[i].name);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&m[3].view, &m[4].view), ctx, BINV_ERROR_ALIASING,
                         "%s: dgate and dup overlap", fn);
    if (rows == 0 || cols == 0)
        return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    cl_program prog;
    if ((st = binv_act_backward_program(ctx, dtype, &prog)) != BINV_SUCCESS) return st;
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols;
    cl_ulong go = gate_offset, lg = ldg, uo = up_offset, lu = ldu, yo = dy_offset, ly = lddy;
    cl_ulong dgo = dgate_offset, ldgg = lddg, duo = dup_offset, ldu2 = lddu;
    const binv_arg args[] = {BINV_ARG(r),     BINV_ARG(c),   BINV_ARG(gate), BINV_ARG(go),
                             BINV_ARG(lg),    BINV_ARG(up),  BINV_ARG(uo),   BINV_ARG(lu),
                             BINV_ARG(dy),    BINV_ARG(yo),  BINV_ARG(ly),   BINV_ARG(dgate),
                             BINV_ARG(dgo),   BINV_ARG(ldgg), BINV_ARG(dup), BINV_ARG(duo),
                             BINV_ARG(ldu2)};
    const size_t lws[2] = {64, 1}, gws[2] = {(cols + 63) / 64 * 64, rows};
    return binv_kernel_launch(ctx, queue, prog, "act_swiglu_backward", args, BINV_NARGS(args), 2,
                              gws, lws, num_events, wait_list, event);
}

binv_status binv_rope_backward(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                               size_t tokens, size_t heads, size_t head_dim, cl_mem x,
                               size_t x_offset, size_t ldx, cl_mem positions,
                               size_t positions_offset, float theta, cl_uint num_events,
                               const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    return binv_rope_run(ctx, "binv_rope_backward", 1, queue, dtype, tokens, heads, head_dim, x,
                         x_offset, ldx, positions, positions_offset, theta, num_events, wait_list,
                         event);
}
