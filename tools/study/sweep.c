/* The sweep every batch family runs (one op case, one implementation, over
 * batch sizes) and the helpers the families share. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "study_tool.h"

const char *const IMPL_NAME[IMPL_COUNT] = {"clblast", "binv-adaptive", "binv-invariant"};
const char *const IMPL_COLOR[IMPL_COUNT] = {"#808080", "#d62728", "#1f77b4"};
const binv_dtype DTYPES[NDTYPES] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

int dtype_wanted(const options *o, binv_dtype dt) {
    return !o->dtypes || strstr(o->dtypes, hx_dtype_name(dt)) != NULL;
}

/* Activations and weights of LLM-like scale: uniform in (-1, 1) times scale,
 * plus offset, stored in the dtype (round to nearest even). */
void fill(binv_dtype dt, void *dst, size_t count, uint64_t seed, float scale, float offset) {
    uint64_t s = seed;
    for (size_t i = 0; i < count; i++) {
        float v = ((float)(hx_rng_next(&s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
        hx_store(dt, dst, i, v + offset);
    }
}

int binv_failed(binv_context *ctx, binv_status st, const char *what) {
    if (st == BINV_SUCCESS) return 0;
    fprintf(stderr, "error: %s: %s: %s\n", what, binv_status_string(st),
            binv_context_last_error(ctx));
    return -1;
}

/* Appends to a bounded string (truncates silently: labels only). */
void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

cl_mem buffer(study *s, size_t bytes, const void *host) {
    cl_int err;
    cl_mem m = clCreateBuffer(s->dev.context,
                              CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)host, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "error: clCreateBuffer(%zu bytes): %d\n", bytes, (int)err);
        return NULL;
    }
    return m;
}

void release(cl_mem *m) {
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
}

series *new_series(study *s) {
    if (s->nser == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        series *n = realloc(s->ser, cap * sizeof *n);
        if (!n) return NULL;
        s->ser = n;
        s->cap = cap;
    }
    series *r = &s->ser[s->nser++];
    memset(r, 0, sizeof *r);
    return r;
}

/* Progress of long sweeps, overwritten in place (only on a terminal, so that
 * logs stay one line per sweep). */
void progress(study *s, const char *what, size_t batch) {
    if (!s->tty) return;
    fprintf(stderr, "\r\033[K[%zu/%zu] %s: batch %zu", s->done + 1, s->total, what, batch);
    fflush(stderr);
}

void progress_clear(study *s) {
    if (s->tty) fprintf(stderr, "\r\033[K");
}

static const char *bits_word(int distinct) { return distinct == 1 ? "invariant" : "VARIES"; }

void print_series_header(void) {
    printf("  %-12s %-16s %-15s %-5s %8s %10s %8s %4s %9s %9s\n", "op", "shape", "implementation",
           "dtype", "distinct", "max|diff|", "max ulp", "det", "ms@1", "ms@max");
}

void print_series(const series *r) {
    printf("  %-12s %-16s %-15s %-5s %8d %10.3g %8.0f %4s %9.3f %9.3f  %s\n", r->op, r->shape,
           IMPL_NAME[r->impl], hx_dtype_name(r->dtype), r->distinct, r->max_abs, r->max_ulp,
           r->deterministic ? "yes" : "NO", r->pts[0].ms, r->pts[r->npts - 1].ms,
           bits_word(r->distinct));
    fflush(stdout);
}

int sweep(study *s, const options *o, const op_case *c, impl_id impl, const size_t *bs,
          size_t nb, FILE *csv) {
    const size_t es = hx_dtype_size(c->dt), oes = hx_dtype_size(c->out_dt);
    const size_t bmax = bs[nb - 1], in_bytes = bmax * c->in_cols * es;
    const size_t row_bytes = c->out_cols * oes, full_bytes = bmax * row_bytes;
    unsigned char *hin = malloc(in_bytes), *row0 = malloc(row_bytes), *ref = malloc(row_bytes);
    unsigned char *full = malloc(full_bytes), *again = malloc(full_bytes);
    hx_hashset seen = {0};
    series *r = new_series(s);
    char what[128];
    int rc = -1;
    if (!hin || !row0 || !ref || !full || !again || !r) {
        fprintf(stderr, "error: out of host memory\n");
        goto out;
    }
    r->family = c->family;
    snprintf(r->op, sizeof r->op, "%s", c->op);
    snprintf(r->shape, sizeof r->shape, "%s", c->shape);
    r->cols = c->in_cols;
    r->impl = impl;
    r->dtype = c->dt;
    r->deterministic = 1;
    snprintf(what, sizeof what, "%s %s %s %s", c->op, c->shape, IMPL_NAME[impl],
             hx_dtype_name(c->dt));
    const int reps = o->quick ? 2 : 5;
    cl_command_queue q = s->dev.queue;
    for (size_t bi = 0; bi < nb; bi++) {
        const size_t b = bs[bi], bytes = b * c->in_cols * es;
        progress(s, what, b);
        /* Row 0 is the request under study; rows 1.. are other requests,
         * different for every batch size. */
        fill(c->dt, hin, c->in_cols, 1, c->scale, 0.0f);
        fill(c->dt, hin + c->in_cols * es, (b - 1) * c->in_cols, 1000 + b, c->scale, 0.0f);
        cl_int err = clEnqueueWriteBuffer(q, c->in, CL_TRUE, 0, bytes, hin, 0, NULL, NULL);
        if (err == CL_SUCCESS && c->pristine)
            err = clEnqueueWriteBuffer(q, c->pristine, CL_TRUE, 0, bytes, hin, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            fprintf(stderr, "error: clEnqueueWriteBuffer: %d\n", (int)err);
            goto out;
        }
        if (c->prepare && c->prepare(s, c, b)) goto out;
        if (c->call(s, c, impl, b)) goto out; /* warm-up: builds the kernels */
        clFinish(q);
        double t0 = hx_now_s();
        for (int i = 0; i < reps; i++)
            if (c->call(s, c, impl, b)) goto out;
        clFinish(q);
        const double ms = (hx_now_s() - t0) / reps * 1e3;
        /* An op that writes its input (add_rmsnorm: x += residual) drifted
         * during the timing: measure on the original input. */
        if (c->pristine) {
            clEnqueueCopyBuffer(q, c->pristine, c->in, 0, 0, bytes, 0, NULL, NULL);
            if (c->call(s, c, impl, b)) goto out;
        }
        if ((err = clEnqueueReadBuffer(q, c->out, CL_TRUE, 0, row_bytes, row0, 0, NULL, NULL))) {
            fprintf(stderr, "error: clEnqueueReadBuffer: %d\n", (int)err);
            goto out;
        }
        if (bi == 0) memcpy(ref, row0, row_bytes);
        hx_diff d = hx_compare(c->out_dt, ref, row0, c->out_cols);
        hx_hashset_add(&seen, row0, row_bytes);
        if (d.max_abs > r->max_abs) r->max_abs = d.max_abs;
        if (d.max_ulp > r->max_ulp) r->max_ulp = d.max_ulp;
        r->pts[r->npts++] = (point){b, d.max_abs, d.max_ulp, ms, seen.count};
        if (o->verbose) {
            progress_clear(s);
            printf("    %s batch %-5zu max|diff| %-10.3g max ulp %-8.0f distinct %-3d %9.3f ms\n",
                   what, b, d.max_abs, d.max_ulp, seen.count, ms);
        }
        if (csv) c->csv_row(csv, s, c, impl, &r->pts[r->npts - 1]);
        /* Run-to-run: the largest batch, computed again R times, must give
         * the same bits for the whole output (not just row 0). */
        if (bi == nb - 1) {
            clEnqueueReadBuffer(q, c->out, CL_TRUE, 0, b * row_bytes, full, 0, NULL, NULL);
            for (int i = 0; i < o->repeats; i++) {
                if (c->pristine)
                    clEnqueueCopyBuffer(q, c->pristine, c->in, 0, 0, bytes, 0, NULL, NULL);
                if (c->call(s, c, impl, b)) goto out;
                clEnqueueReadBuffer(q, c->out, CL_TRUE, 0, b * row_bytes, again, 0, NULL, NULL);
                if (memcmp(full, again, b * row_bytes)) r->deterministic = 0;
            }
        }
    }
    r->distinct = seen.count;
    rc = 0;
out:
    progress_clear(s);
    if (rc && r) s->nser--; /* an incomplete sweep is not reported */
    if (!rc) print_series(r);
    s->done++;
    hx_hashset_free(&seen);
    free(hin); free(row0); free(ref); free(full); free(again);
    return rc;
}
