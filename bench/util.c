/* binv-bench's small helpers: errors, growable arrays, buffers, median. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

int fail(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("binv-bench: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int push(void **arr, size_t *n, size_t *cap, const void *elem, size_t sz) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void *p = realloc(*arr, c * sz);
        if (!p) return fail("out of host memory");
        *arr = p;
        *cap = c;
    }
    memcpy((unsigned char *)*arr + *n * sz, elem, sz);
    (*n)++;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int create_buffer(bench *b, size_t bytes, const void *init, cl_mem *out, const char *what) {
    cl_int err;
    if ((cl_ulong)bytes > b->max_alloc)
        return fail("%s needs %zu bytes, more than CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu): use "
                    "smaller sizes", what, bytes, (unsigned long long)b->max_alloc);
    *out = clCreateBuffer(b->dev.context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return fail("clCreateBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    if (init) {
        err = clEnqueueWriteBuffer(b->queue, *out, CL_TRUE, 0, bytes, init, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return fail("clEnqueueWriteBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    }
    return 0;
}

void release_mem(cl_mem *m) {
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
}

/* Sets `bytes` bytes at byte offset `off` of buf to 0xff (NaN in every
 * dtype) with the widest pattern that divides both: a 1-byte pattern makes
 * some drivers run one work-item per byte, and NVIDIA's fails
 * (CL_OUT_OF_RESOURCES) past 2^31 of them. */
int fill_nan(bench *b, cl_mem buf, size_t off, size_t bytes) {
    static const unsigned char ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    size_t pat = 16;
    while ((off | bytes) % pat) pat /= 2;
    CL_TRY(clEnqueueFillBuffer(b->queue, buf, ones, pat, off, bytes, 0, NULL, NULL),
           "clEnqueueFillBuffer");
    return 0;
}

/* Reads `bytes` at byte offset `off` of buf into dst. */
int read_back(bench *b, cl_mem buf, size_t off, size_t bytes, void *dst) {
    CL_TRY(clEnqueueReadBuffer(b->queue, buf, CL_TRUE, off, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer");
    return 0;
}

void record_row0(hx_hashset *set, int *nmeas, const void *row, size_t bytes) {
    (*nmeas)++;
    hx_hashset_add(set, row, bytes);
}
