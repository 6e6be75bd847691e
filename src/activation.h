/* What src/activation.c, src/activation_backward.c and src/attention.c share
 * for the elementwise ops and their backward.  Not installed. */
#ifndef BINV_ACTIVATION_H
#define BINV_ACTIVATION_H

#include "internal.h"

/* A rows x cols matrix argument of an elementwise op. */
typedef struct binv_act_mat {
    const char *name; /* for messages ("gate", "dy", ...) */
    cl_mem buf;
    size_t off, ld;   /* elements */
    int access;       /* BINV_ACCESS_READ or BINV_ACCESS_WRITE */
    binv_view view;   /* out: its bytes, through sub-buffers (empty when rows or cols is 0) */
} binv_act_mat;
#define BINV_ACT_MAT(nm, b, o, l, acc) \
    {.name = (nm), .buf = (b), .off = (o), .ld = (l), .access = (acc)}

/* The checks every elementwise op makes, in this order: clears the message
 * and *event; dtype; queue; wait list; rows and cols < 2^31; every ld >=
 * cols; extents that fit size_t; every matrix against its buffer
 * (binv_check_buffer) then its view and access flags (binv_view_of).  The
 * overlap rules are the op's own (after this). */
binv_status binv_act_check(binv_context *ctx, const char *fn, cl_command_queue queue,
                           binv_dtype dtype, size_t rows, size_t cols, binv_act_mat *m, size_t n,
                           cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* The program of the backward kernels (cl/activation.cl followed by
 * cl/activation_backward.cl) for dtype. */
binv_status binv_act_backward_program(binv_context *ctx, binv_dtype dtype, cl_program *out);

/* binv_rope (inverse 0, kernel attn_rope) and binv_rope_backward (inverse 1,
 * kernel act_rope_backward): one validation, one launch (src/attention.c). */
binv_status binv_rope_run(binv_context *ctx, const char *fn, int inverse, cl_command_queue queue,
                          binv_dtype dtype, size_t tokens, size_t heads, size_t head_dim, cl_mem x,
                          size_t x_offset, size_t ldx, cl_mem positions, size_t positions_offset,
                          float theta, cl_uint num_events, const cl_event *wait_list,
                          cl_event *event);

extern const char binv_cl_activation_backward[];

#endif
