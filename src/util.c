/* Error messages, debug logging and the argument checks every op shares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The slot of the calling thread; created on demand (NULL if out of memory). */
static binv_err_slot *slot_for_thread(binv_context *ctx, int create) {
    pthread_t self = pthread_self();
    binv_err_slot *s;
    for (s = ctx->errors; s; s = s->next)
        if (pthread_equal(s->thread, self)) return s;
    if (!create) return NULL;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->thread = self;
    s->next = ctx->errors;
    ctx->errors = s;
    return s;
}

binv_status binv_set_error(binv_context *ctx, binv_status status, const char *fmt, ...) {
    if (!ctx) return status;
    pthread_mutex_lock(&ctx->lock);
    binv_err_slot *s = slot_for_thread(ctx, 1);
    if (s) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->msg, sizeof s->msg, fmt, ap);
        va_end(ap);
        if (ctx->debug) fprintf(stderr, "binv: error %d (%s): %s\n", status,
                                binv_status_string(status), s->msg);
    }
    pthread_mutex_unlock(&ctx->lock);
    return status;
}

void binv_clear_error(binv_context *ctx) {
    pthread_mutex_lock(&ctx->lock);
    binv_err_slot *s = slot_for_thread(ctx, 0);
    if (s) s->msg[0] = '\0';
    pthread_mutex_unlock(&ctx->lock);
}

void binv_debug(const binv_context *ctx, const char *fmt, ...) {
    if (!ctx || !ctx->debug) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("binv: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *binv_context_last_error(const binv_context *cctx) {
    if (!cctx) return "binv_context is NULL";
    binv_context *ctx = (binv_context *)cctx; /* the lock is not part of the value */
    pthread_mutex_lock(&ctx->lock);
    binv_err_slot *s = slot_for_thread(ctx, 0);
    const char *msg = s ? s->msg : "";
    pthread_mutex_unlock(&ctx->lock);
    return msg;
}

const char *binv_status_string(binv_status status) {
    switch (status) {
    case BINV_SUCCESS: return "success";
    case BINV_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case BINV_ERROR_INVALID_DIMENSION: return "invalid dimension";
    case BINV_ERROR_INVALID_LEADING_DIMENSION: return "invalid leading dimension";
    case BINV_ERROR_BUFFER_TOO_SMALL: return "buffer too small";
    case BINV_ERROR_UNSUPPORTED_DTYPE: return "unsupported dtype";
    case BINV_ERROR_UNSUPPORTED_DEVICE: return "unsupported device";
    case BINV_ERROR_BUILD_FAILED: return "kernel build failed";
    case BINV_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case BINV_ERROR_INVALID_ENUM: return "invalid enum value";
    case BINV_ERROR_CONTEXT_MISMATCH: return "object of another OpenCL context or device";
    case BINV_ERROR_ALIASING: return "output overlaps an input";
    case BINV_ERROR_INVALID_VALUE: return "invalid scalar value";
    default: break;
    }
    if (status < 0 && status > -2000) return "OpenCL error (see the OpenCL status code)";
    return "unknown status";
}

const char *binv_version_string(void) { return BINV_VERSION_STRING; }

int binv_mul_add_size(size_t a, size_t b, size_t c, size_t *out) {
    if (a != 0 && b > (SIZE_MAX - c) / a) return 0;
    *out = a * b + c;
    return 1;
}

size_t binv_dtype_size(binv_dtype dtype) {
    switch (dtype) {
    case BINV_DTYPE_F32: return 4;
    case BINV_DTYPE_F16: return 2;
    case BINV_DTYPE_BF16: return 2;
    }
    return 0;
}

const char *binv_dtype_name(binv_dtype dtype) {
    switch (dtype) {
    case BINV_DTYPE_F32: return "f32";
    case BINV_DTYPE_F16: return "f16";
    case BINV_DTYPE_BF16: return "bf16";
    }
    return "?";
}

binv_status binv_check_buffer(binv_context *ctx, cl_mem buf, size_t offset, size_t extent,
                              size_t elem, const char *what) {
    BINV_RETURN_ERROR_ON(!buf, ctx, BINV_ERROR_INVALID_ARGUMENT, "%s is NULL", what);
    cl_context owner = NULL;
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(buf, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
    BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                         "%s is not a valid cl_mem (clGetMemObjectInfo: %d)", what, (int)err);
    BINV_RETURN_ERROR_ON(owner != ctx->cl_ctx, ctx, BINV_ERROR_CONTEXT_MISMATCH,
                         "%s belongs to another cl_context", what);
    err = clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof size, &size, NULL);
    BINV_CHECK_CL(ctx, err, "clGetMemObjectInfo(CL_MEM_SIZE)");
    size_t end_elems, end_bytes;
    BINV_RETURN_ERROR_ON(!binv_mul_add_size(1, offset, extent, &end_elems) ||
                             !binv_mul_add_size(end_elems, elem, 0, &end_bytes),
                         ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: offset %zu + extent %zu elements overflows size_t", what, offset,
                         extent);
    BINV_RETURN_ERROR_ON(end_bytes > size, ctx, BINV_ERROR_BUFFER_TOO_SMALL,
                         "%s: the view needs %zu bytes (offset %zu + %zu elements of %zu bytes) "
                         "but CL_MEM_SIZE is %zu",
                         what, end_bytes, offset, extent, elem, size);
    return BINV_SUCCESS;
}

int binv_views_overlap(cl_mem p, size_t po, size_t pe, cl_mem q, size_t qo, size_t qe) {
    return p == q && po < qo + qe && qo < po + pe;
}

int binv_rows_views_overlap(cl_mem p, size_t po, size_t pw, cl_mem q, size_t qo, size_t qw,
                            size_t rows, size_t ld) {
    if (p != q || rows == 0 || pw == 0 || qw == 0) return 0;
    const size_t ext = (rows - 1) * ld;
    if (!binv_views_overlap(p, po, ext + pw, q, qo, ext + qw)) return 0;
    /* Same row stride: rows r and r' meet only if the column offset between
     * the views (modulo ld) falls inside one of them. */
    if (pw > ld || qw > ld) return 1;
    const size_t d = (qo >= po ? qo - po : po - qo) % ld;
    const size_t first = qo >= po ? pw : qw, second = qo >= po ? qw : pw;
    return d < first || ld - d < second;
}

binv_status binv_check_queue(binv_context *ctx, cl_command_queue queue) {
    BINV_RETURN_ERROR_ON(!queue, ctx, BINV_ERROR_INVALID_ARGUMENT, "queue is NULL");
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
    BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                         "queue is not a valid cl_command_queue (clGetCommandQueueInfo: %d)",
                         (int)err);
    err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL);
    BINV_CHECK_CL(ctx, err, "clGetCommandQueueInfo(CL_QUEUE_DEVICE)");
    BINV_RETURN_ERROR_ON(qctx != ctx->cl_ctx || qdev != ctx->device, ctx,
                         BINV_ERROR_CONTEXT_MISMATCH,
                         "queue belongs to another cl_context or device than the binv_context");
    return BINV_SUCCESS;
}

binv_status binv_check_wait_list(binv_context *ctx, cl_uint num_events, const cl_event *wait_list) {
    BINV_RETURN_ERROR_ON((num_events == 0) != (wait_list == NULL), ctx,
                         BINV_ERROR_INVALID_ARGUMENT,
                         "wait_list must be NULL exactly when num_events is 0 (num_events=%u)",
                         (unsigned)num_events);
    for (cl_uint i = 0; i < num_events; i++)
        BINV_RETURN_ERROR_ON(!wait_list[i], ctx, BINV_ERROR_INVALID_ARGUMENT,
                             "wait_list[%u] is NULL", (unsigned)i);
    return BINV_SUCCESS;
}

binv_status binv_enqueue_marker(binv_context *ctx, cl_command_queue queue, cl_uint num_events,
                                const cl_event *wait_list, cl_event *event) {
    if (event)
        BINV_CHECK_CL(ctx, clEnqueueMarkerWithWaitList(queue, num_events, wait_list, event),
                      "clEnqueueMarkerWithWaitList");
    return BINV_SUCCESS;
}
