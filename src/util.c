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
        if (ctx->tuning.debug) fprintf(stderr, "binv: error %d (%s): %s\n", status,
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
    if (!ctx || !ctx->tuning.debug) return;
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
    case BINV_ERROR_ACCESS_FLAGS: return "buffer access flags forbid the access";
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

int binv_mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    return binv_mul_add_size(a, b, 0, &ab) && binv_mul_add_size(ab, c, 0, out);
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
    return p == q && pe && qe && po < qo + qe && qo < po + pe;
}

/* Sub-buffers of sub-buffers are not allowed in OpenCL 1.2; a few levels are
 * followed anyway (later versions and extensions), with a bound so that a
 * broken driver cannot loop us. */
#define BINV_VIEW_MAX_DEPTH 8

binv_status binv_view_of(binv_context *ctx, cl_mem buf, size_t off, size_t rows, size_t width,
                         size_t ld, size_t elem, int access, const char *what, binv_view *v) {
    memset(v, 0, sizeof *v);
    cl_mem cur = buf;
    size_t base = 0;
    cl_int err;
    for (int depth = 0;; depth++) {
        cl_mem_object_type type = 0;
        cl_mem_flags flags = 0;
        cl_mem parent = NULL;
        err = clGetMemObjectInfo(cur, CL_MEM_TYPE, sizeof type, &type, NULL);
        if (err == CL_SUCCESS)
            err = clGetMemObjectInfo(cur, CL_MEM_FLAGS, sizeof flags, &flags, NULL);
        if (err == CL_SUCCESS)
            err = clGetMemObjectInfo(cur, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent,
                                     NULL);
        BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                             "%s: clGetMemObjectInfo failed: %d", what, (int)err);
        BINV_RETURN_ERROR_ON(type != CL_MEM_OBJECT_BUFFER, ctx, BINV_ERROR_INVALID_ARGUMENT,
                             "%s is not a buffer (CL_MEM_TYPE 0x%x)", what, (unsigned)type);
        /* Flags of every level: a sub-buffer created with flags 0 inherits
         * its parent's, which CL_MEM_FLAGS of the sub-buffer may not show. */
        if (rows && width) {
            BINV_RETURN_ERROR_ON((access & BINV_ACCESS_WRITE) && (flags & CL_MEM_READ_ONLY), ctx,
                                 BINV_ERROR_ACCESS_FLAGS,
                                 "%s is written but its buffer is CL_MEM_READ_ONLY", what);
            BINV_RETURN_ERROR_ON((access & BINV_ACCESS_READ) && (flags & CL_MEM_WRITE_ONLY), ctx,
                                 BINV_ERROR_ACCESS_FLAGS,
                                 "%s is read but its buffer is CL_MEM_WRITE_ONLY", what);
        }
        if (!parent) {
            v->space = (uintptr_t)cur;
            if (flags & CL_MEM_USE_HOST_PTR) {
                void *host = NULL;
                err = clGetMemObjectInfo(cur, CL_MEM_HOST_PTR, sizeof host, &host, NULL);
                BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                                     "%s: clGetMemObjectInfo(CL_MEM_HOST_PTR) failed: %d", what,
                                     (int)err);
                if (host) {
                    v->space = 0;
                    base += (size_t)(uintptr_t)host;
                }
            }
            break;
        }
        BINV_RETURN_ERROR_ON(depth + 1 >= BINV_VIEW_MAX_DEPTH, ctx, BINV_ERROR_INVALID_ARGUMENT,
                             "%s: sub-buffers nested deeper than %d levels", what,
                             BINV_VIEW_MAX_DEPTH);
        size_t sub = 0;
        err = clGetMemObjectInfo(cur, CL_MEM_OFFSET, sizeof sub, &sub, NULL);
        BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                             "%s: clGetMemObjectInfo(CL_MEM_OFFSET) failed: %d", what, (int)err);
        base += sub; /* inside the parent's CL_MEM_SIZE: no overflow */
        cur = parent;
    }
    /* binv_check_buffer bounded off + extent inside CL_MEM_SIZE, so these
     * products fit; checked anyway, as every product is. */
    size_t start, wb, lb;
    BINV_RETURN_ERROR_ON(!binv_mul_add_size(off, elem, base, &start) ||
                             !binv_mul_add_size(width, elem, 0, &wb) ||
                             !binv_mul_add_size(ld, elem, 0, &lb),
                         ctx, BINV_ERROR_INVALID_DIMENSION, "%s: view overflows size_t", what);
    v->start = start;
    v->rows = rows;
    v->width = wb;
    v->ld = rows > 1 ? lb : 0;
    return BINV_SUCCESS;
}

/* [a, b) meets a row of q (q->rows rows of q->width bytes, q->ld apart). */
static int segment_meets_rows(size_t a, size_t b, const binv_view *q) {
    if (b <= q->start) return 0;
    if (q->rows == 1) return a < q->start + q->width;
    /* The first row r whose end q->start + r*ld + width passes a. */
    size_t r = 0;
    if (a >= q->start + q->width) r = (a - q->start - q->width) / q->ld + 1;
    return r < q->rows && r * q->ld < b - q->start;
}

int binv_view_overlap(const binv_view *p, const binv_view *q) {
    if (!p->rows || !p->width || !q->rows || !q->width || p->space != q->space) return 0;
    /* Extents fit in size_t: every view was checked against its buffer. */
    const size_t pe = p->start + (p->rows - 1) * p->ld + p->width;
    const size_t qe = q->start + (q->rows - 1) * q->ld + q->width;
    if (!(p->start < qe && q->start < pe)) return 0;
    if (p->rows == 1) return segment_meets_rows(p->start, pe, q);
    if (q->rows == 1) return segment_meets_rows(q->start, qe, p);
    if (p->ld != q->ld || p->width > p->ld || q->width > q->ld) return 1; /* conservative */
    /* Same stride, rows no wider than it.  With q after p by k*ld + d
     * (0 <= d < ld), row s of q starts (s - r + k)*ld + d after row r of p;
     * they meet only for s - r + k = 0 (d < p's width) or -1 (q's row runs
     * into p's next row: ld - d < q's width), and s - r ranges over
     * [-(p rows - 1), q rows - 1]. */
    const binv_view *a = p->start <= q->start ? p : q, *b = a == p ? q : p;
    const size_t delta = b->start - a->start, k = delta / a->ld, d = delta % a->ld;
    return (d < a->width && k <= a->rows - 1) || (a->ld - d < b->width && k + 1 <= a->rows - 1);
}

int binv_view_same(const binv_view *p, const binv_view *q) {
    return p->rows && p->width && p->space == q->space && p->start == q->start &&
           p->rows == q->rows && p->width == q->width && p->ld == q->ld;
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
    for (cl_uint i = 0; i < num_events; i++) {
        BINV_RETURN_ERROR_ON(!wait_list[i], ctx, BINV_ERROR_INVALID_ARGUMENT,
                             "wait_list[%u] is NULL", (unsigned)i);
        /* clEnqueue* would answer CL_INVALID_CONTEXT, but only after the
         * call's first commands were enqueued: check before anything is. */
        cl_context ectx = NULL;
        cl_int err = clGetEventInfo(wait_list[i], CL_EVENT_CONTEXT, sizeof ectx, &ectx, NULL);
        BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                             "wait_list[%u] is not a valid cl_event (clGetEventInfo: %d)",
                             (unsigned)i, (int)err);
        BINV_RETURN_ERROR_ON(ectx != ctx->cl_ctx, ctx, BINV_ERROR_CONTEXT_MISMATCH,
                             "wait_list[%u] belongs to another cl_context", (unsigned)i);
    }
    return BINV_SUCCESS;
}

binv_status binv_enqueue_marker(binv_context *ctx, cl_command_queue queue, cl_uint num_events,
                                const cl_event *wait_list, cl_event *event) {
    if (event)
        BINV_CHECK_CL(ctx, clEnqueueMarkerWithWaitList(queue, num_events, wait_list, event),
                      "clEnqueueMarkerWithWaitList");
    return BINV_SUCCESS;
}

binv_status binv_kernel_launch_seq(binv_context *ctx, cl_command_queue q, cl_program prog, int n,
                                   const binv_launch *l, cl_uint nwait, const cl_event *wait,
                                   cl_event *ev) {
    BINV_RETURN_ERROR_ON(n < 1 || n > BINV_LAUNCH_SEQ_MAX, ctx, BINV_ERROR_INVALID_ARGUMENT,
                         "internal: a sequence of %d kernels", n);
    cl_kernel kern[BINV_LAUNCH_SEQ_MAX] = {NULL};
    binv_status st = BINV_SUCCESS;
    int got = 0;
    for (; got < n && st == BINV_SUCCESS; got++) {
        if ((st = binv_kernel_acquire(ctx, prog, l[got].name, l[got].nargs, &kern[got])) !=
            BINV_SUCCESS)
            break;
        st = binv_kernel_set_args(ctx, kern[got], l[got].name, l[got].args, l[got].nargs);
        size_t wg = 0, items = 1;
        cl_int err = CL_SUCCESS;
        if (st == BINV_SUCCESS)
            err = clGetKernelWorkGroupInfo(kern[got], ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof wg, &wg, NULL);
        if (st == BINV_SUCCESS && err != CL_SUCCESS)
            st = binv_set_error(ctx, err, "clGetKernelWorkGroupInfo(%s) failed: %d", l[got].name,
                                (int)err);
        for (cl_uint d = 0; d < l[got].dims && l[got].lws; d++) items *= l[got].lws[d];
        if (st == BINV_SUCCESS && items > wg)
            st = binv_set_error(ctx, BINV_ERROR_UNSUPPORTED_DEVICE,
                                "%s needs work-groups of %zu items; the device allows %zu for it",
                                l[got].name, items, wg);
    }
    cl_event prev = NULL;
    for (int i = 0; i < n && st == BINV_SUCCESS; i++) {
        cl_event mine = NULL;
        cl_int err = clEnqueueNDRangeKernel(q, kern[i], l[i].dims, NULL, l[i].gws, l[i].lws,
                                            i ? 1 : nwait, i ? &prev : wait,
                                            i + 1 < n ? &mine : ev);
        if (err != CL_SUCCESS)
            st = binv_set_error(ctx, err, "clEnqueueNDRangeKernel(%s) failed: %d", l[i].name,
                                (int)err);
        if (prev) clReleaseEvent(prev);
        prev = mine;
    }
    if (prev) clReleaseEvent(prev);
    for (int i = 0; i < got; i++)
        if (kern[i]) binv_kernel_release(ctx, prog, l[i].name, kern[i]);
    return st;
}

size_t binv_context_retained_objects(binv_context *ctx) {
    size_t n = 0;
    pthread_mutex_lock(&ctx->lock);
    for (const binv_workspace *w = ctx->workspaces; w; w = w->next)
        n += 1 + (w->buffer != NULL) + (w->counters != NULL);
    for (const binv_rope_table *t = ctx->rope_tables; t; t = t->next) n++;
    for (const binv_program_entry *e = ctx->programs; e; e = e->next) n++;
    for (const binv_kernel_entry *e = ctx->free_kernels; e; e = e->next) n++;
    pthread_mutex_unlock(&ctx->lock);
    return n;
}
