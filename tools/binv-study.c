/* binv-study: measures batch variance and run-to-run nondeterminism on an
 * OpenCL device, and what libbinv-cl's invariant schedule does about them.
 *
 * Op families (FAMILIES[] near the end: each measures, reports and plots
 * itself, so a new op family is one more entry):
 *  - gemm:    the same request (row 0 of A) computed alone and as row 0 of
 *             batches of 2..N rows, by CLBlast, libbinv adaptive and libbinv
 *             invariant;
 *  - rows:    the same for the row reductions (rmsnorm, add_rmsnorm,
 *             layernorm, softmax, log_softmax, row_sum) over row counts, for
 *             libbinv adaptive and invariant;
 *  - atomics: run-to-run nondeterminism, which is a different thing: a float
 *             sum by atomic compare-and-swap (a kernel of this file, not of
 *             the library) run R times on the same input, against
 *             binv_row_sum of the same data.
 * For every sweep: how far row 0 moves from its batch-of-1 value (max |diff|,
 * max ulp), how many distinct bit patterns it takes, whether R repeated calls
 * at the largest batch give the same bits, and the time per call.  Writes a
 * report folder: report.md, CSVs and (with gnuplot) PNG plots. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#ifdef BINV_HAVE_CLBLAST
#include <clblast_c.h>
#endif

typedef enum { IMPL_CLBLAST, IMPL_ADAPTIVE, IMPL_INVARIANT, IMPL_COUNT } impl_id;
static const char *IMPL_NAME[] = {"clblast", "binv-adaptive", "binv-invariant"};
/* Plot colours, one per implementation (dtypes differ by point and dash). */
static const char *IMPL_COLOR[] = {"#808080", "#d62728", "#1f77b4"};

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
enum { NDTYPES = 3, MAX_BATCHES = 32 };

typedef struct options {
    const char *device, *out, *only, *dtypes;
    int quick, repeats, list, verbose;
    int clblast_probe; /* internal: --clblast-probe, see clblast_usable() */
    size_t n, k, router_n, max_batch; /* gemm */
    size_t cols, max_rows;            /* rows: cols overrides every case's width */
    size_t attn_ctx;                  /* attention: context of the studied sequence */
    const char *llm_report;           /* a binv-llm --report section to include */
    size_t atomic_n;                  /* atomics */
    int atomic_repeats;
} options;

/* Row 0 of one batch size. */
typedef struct point {
    size_t batch;
    double max_abs, max_ulp, ms;
    int distinct_so_far;
} point;

/* One sweep: an op at one shape, by one implementation in one dtype, over
 * batch sizes. */
typedef struct series {
    const char *family;
    char op[24], shape[40];
    size_t cols;       /* rows family: the row width (for the schedule rule) */
    impl_id impl;
    binv_dtype dtype;
    int distinct, deterministic;
    double max_abs, max_ulp;
    point pts[MAX_BATCHES];
    size_t npts;
} series;

/* One method of the atomics family, run R times on the same vector. */
typedef struct atomic_method {
    const char *name;
    float *values; /* one result per repeat */
    int distinct;
    double ms;
} atomic_method;

enum { ATOMIC_METHODS = 3 };

typedef struct study {
    hx_device dev;
    size_t cus;
    binv_context *inv, *adapt;
    int tty;             /* progress lines on stderr */
    series *ser;
    size_t nser, cap;
    size_t total, done;  /* sweeps of the running family, for progress */
    atomic_method atom[ATOMIC_METHODS];
    size_t atom_n;
    int atom_repeats;
    double atom_ref;
    int atom_ran;
} study;

static int dtype_wanted(const options *o, binv_dtype dt) {
    return !o->dtypes || strstr(o->dtypes, hx_dtype_name(dt)) != NULL;
}

/* Activations and weights of LLM-like scale: uniform in (-1, 1) times scale,
 * plus offset, stored in the dtype (round to nearest even). */
static void fill(binv_dtype dt, void *dst, size_t count, uint64_t seed, float scale, float offset) {
    uint64_t s = seed;
    for (size_t i = 0; i < count; i++) {
        float v = ((float)(hx_rng_next(&s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
        hx_store(dt, dst, i, v + offset);
    }
}

/* Appends to a bounded string (truncates silently: labels only). */
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static cl_mem buffer(study *s, size_t bytes, const void *host) {
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

static void release(cl_mem *m) {
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
}

static series *new_series(study *s) {
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
static void progress(study *s, const char *what, size_t batch) {
    if (!s->tty) return;
    fprintf(stderr, "\r\033[K[%zu/%zu] %s: batch %zu", s->done + 1, s->total, what, batch);
    fflush(stderr);
}

static void progress_clear(study *s) {
    if (s->tty) fprintf(stderr, "\r\033[K");
}

static const char *bits_word(int distinct) { return distinct == 1 ? "invariant" : "VARIES"; }

static void print_series_header(void) {
    printf("  %-12s %-16s %-15s %-5s %8s %10s %8s %4s %9s %9s\n", "op", "shape", "implementation",
           "dtype", "distinct", "max|diff|", "max ulp", "det", "ms@1", "ms@max");
}

static void print_series(const series *r) {
    printf("  %-12s %-16s %-15s %-5s %8d %10.3g %8.0f %4s %9.3f %9.3f  %s\n", r->op, r->shape,
           IMPL_NAME[r->impl], hx_dtype_name(r->dtype), r->distinct, r->max_abs, r->max_ulp,
           r->deterministic ? "yes" : "NO", r->pts[0].ms, r->pts[r->npts - 1].ms,
           bits_word(r->distinct));
    fflush(stdout);
}

/* ---- The sweep shared by the batch families ------------------------------ */

struct op_case;
typedef int (*call_fn)(study *s, const struct op_case *c, impl_id impl, size_t batch);

/* A batched op: one call at batch b on buffers sized for the largest batch.
 * Row r of `in` (in_cols elements) is request r; row 0 is the request under
 * study, and its output is the first out_cols elements of `out`.  A family
 * whose batch is more than rows of one matrix (attention: the sequences of a
 * step and their KV cache) sets `prepare`, called after the input is written
 * for batch b and before any call, and keeps its own state in `user`. */
typedef struct op_case {
    const char *family;
    char op[24], shape[40];
    int rop;               /* rows family: which op */
    binv_dtype dt;         /* storage dtype of the batch input */
    binv_dtype out_dt;     /* dtype of the output (row_sum: f32) */
    size_t in_cols;        /* elements per request row */
    size_t out_cols;       /* elements per output row */
    size_t n, k;           /* gemm */
    float scale;           /* input values: uniform in (-scale, scale) */
    cl_mem in, pristine;   /* pristine: a copy of `in` for ops that write their input */
    cl_mem out, w, w2, res;
    call_fn call;
    /* One line of the family's CSV for one batch size. */
    void (*csv_row)(FILE *f, const study *s, const struct op_case *c, impl_id impl,
                    const point *p);
    int (*prepare)(study *s, const struct op_case *c, size_t batch); /* may be NULL */
    void *user;
} op_case;

static int sweep(study *s, const options *o, const op_case *c, impl_id impl, const size_t *bs,
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

/* ---- GEMM ---------------------------------------------------------------- */

/* 0 when CLBlast failed its probe on this device (clblast_usable). */
static int clblast_ok = 1;

static int impl_available(impl_id impl, binv_dtype dt) {
    if (impl != IMPL_CLBLAST) return 1;
#ifdef BINV_HAVE_CLBLAST
    return clblast_ok && dt == BINV_DTYPE_F32;
#else
    (void)dt;
    return 0;
#endif
}

/* C[m, n] = A[m, k] * W[n, k]^T by implementation `impl`. */
static int gemm_call(study *s, const op_case *c, impl_id impl, size_t m) {
    const size_t n = c->n, k = c->k;
    if (impl == IMPL_CLBLAST) {
#ifdef BINV_HAVE_CLBLAST
        if (c->dt != BINV_DTYPE_F32) return -1;
        CLBlastStatusCode st =
            CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n, k,
                         1.0f, c->in, 0, k, c->w, 0, k, 0.0f, c->out, 0, n, &s->dev.queue, NULL);
        if (st != CLBlastSuccess) {
            fprintf(stderr, "error: CLBlastSgemm: %d\n", (int)st);
            return -1;
        }
        return 0;
#else
        return -1;
#endif
    }
    binv_context *ctx = impl == IMPL_ADAPTIVE ? s->adapt : s->inv;
    binv_status st = binv_gemm(ctx, s->dev.queue, c->dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f,
                               c->in, 0, k, c->w, 0, k, 0.0f, c->out, 0, n, 0, NULL, NULL);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_gemm: %s: %s\n", binv_status_string(st),
                binv_context_last_error(ctx));
        return -1;
    }
    return 0;
}

static void gemm_csv_row(FILE *f, const study *s, const op_case *c, impl_id impl, const point *p) {
    (void)s;
    fprintf(f, "gemm,%s,%s,%zu,%zu,%zu,%.9g,%.0f,%d,%.6f\n", IMPL_NAME[impl],
            hx_dtype_name(c->dt), p->batch, c->n, c->k, p->max_abs, p->max_ulp,
            p->distinct_so_far, p->ms);
}

typedef struct gemm_shape {
    size_t n, k;
    const char *what;
} gemm_shape;

static size_t gemm_shapes(const options *o, gemm_shape *sh) {
    size_t ns = 0;
    sh[ns++] = (gemm_shape){o->n, o->k, "a projection of the hidden state"};
    /* A MoE router (hidden -> 64 experts): few output tiles, so a
     * shape-adaptive library splits K even on a device with few units. */
    if (o->router_n && o->router_n != o->n)
        sh[ns++] = (gemm_shape){o->router_n, o->k,
                                "a narrow projection like a MoE router (hidden to experts)"};
    return ns;
}

static int gemm_run(study *s, const options *o, FILE *csv) {
    size_t bs[MAX_BATCHES], nb = hx_batch_sizes(o->max_batch, bs, MAX_BATCHES);
    gemm_shape sh[2];
    size_t ns = gemm_shapes(o, sh);
    s->total = s->done = 0;
    for (size_t i = 0; i < ns; i++)
        for (int d = 0; d < NDTYPES; d++)
            for (int impl = 0; impl < IMPL_COUNT; impl++)
                s->total += dtype_wanted(o, DTYPES[d]) && impl_available((impl_id)impl, DTYPES[d]);
    if (csv)
        fprintf(csv, "op,impl,dtype,m,n,k,max_abs_diff,max_ulp_diff,distinct_so_far,ms_per_call\n");
    printf("\nGEMM: C[m, n] = A[m, k] W[n, k]^T, row 0 of A fixed, batches m = 1..%zu\n",
           bs[nb - 1]);
    print_series_header();
    int rc = 0;
    for (size_t i = 0; i < ns && !rc; i++)
        for (int d = 0; d < NDTYPES && !rc; d++) {
            const binv_dtype dt = DTYPES[d];
            if (!dtype_wanted(o, dt)) continue;
            const size_t es = hx_dtype_size(dt), n = sh[i].n, k = sh[i].k, mmax = bs[nb - 1];
            op_case c = {0};
            c.family = "gemm";
            snprintf(c.op, sizeof c.op, "gemm");
            snprintf(c.shape, sizeof c.shape, "n=%zu k=%zu", n, k);
            c.dt = c.out_dt = dt;
            c.in_cols = k;
            c.out_cols = n;
            c.n = n;
            c.k = k;
            c.scale = 1.0f;
            c.call = gemm_call;
            c.csv_row = gemm_csv_row;
            unsigned char *hw = malloc(n * k * es);
            if (!hw) return -1;
            fill(dt, hw, n * k, 7, 2.0f / sqrtf((float)k), 0.0f);
            c.w = buffer(s, n * k * es, hw);
            free(hw);
            c.in = buffer(s, mmax * k * es, NULL);
            c.out = buffer(s, mmax * n * es, NULL);
            if (!c.w || !c.in || !c.out) rc = -1;
            for (int impl = 0; impl < IMPL_COUNT && !rc; impl++)
                if (impl_available((impl_id)impl, dt))
                    rc = sweep(s, o, &c, (impl_id)impl, bs, nb, csv);
            release(&c.w);
            release(&c.in);
            release(&c.out);
        }
    return rc;
}

/* ---- Row reductions -------------------------------------------------------- */

enum { R_RMSNORM, R_ADD_RMSNORM, R_LAYERNORM, R_SOFTMAX, R_LOG_SOFTMAX, R_ROW_SUM };

typedef struct rows_case {
    int rop;
    const char *name;
    size_t cols;
    float scale;
    const char *what;
} rows_case;

/* LLM widths.  The adaptive row schedule splits a row into more pieces when
 * there are fewer rows than work-groups that fill the device (8 per compute
 * unit), so whether it varies depends on cols / 1024 against that count: a
 * 4096-wide row splits further on any device, a 152,064-wide vocabulary row
 * only where 8 * compute units > 149 (docs/schedules.md). */
static const rows_case ROWS_CASES[] = {
    {R_RMSNORM, "rmsnorm", 4096, 1.0f, "hidden size of Llama-2/3 7-8B"},
    {R_RMSNORM, "rmsnorm", 14336, 1.0f, "Llama-3-8B MLP width"},
    {R_ADD_RMSNORM, "add_rmsnorm", 4096, 1.0f, "residual add + norm, hidden 4096"},
    {R_LAYERNORM, "layernorm", 4096, 1.0f, "hidden 4096"},
    {R_SOFTMAX, "softmax", 152064, 8.0f, "Qwen2 vocabulary, logits in (-8, 8)"},
    {R_LOG_SOFTMAX, "log_softmax", 152064, 8.0f, "Qwen2 vocabulary"},
    {R_ROW_SUM, "row_sum", 14336, 1.0f, "f32 sum of a 14,336-wide row"},
};
enum { NROWS_CASES = sizeof ROWS_CASES / sizeof ROWS_CASES[0] };

static int rows_call(study *s, const op_case *c, impl_id impl, size_t b) {
    binv_context *ctx = impl == IMPL_ADAPTIVE ? s->adapt : s->inv;
    cl_command_queue q = s->dev.queue;
    const size_t n = c->in_cols;
    const float eps = 1e-5f;
    binv_status st;
    switch (c->rop) {
    case R_RMSNORM:
        st = binv_rmsnorm(ctx, q, c->dt, b, n, c->in, 0, n, c->w, 0, eps, c->out, 0, n, 0, NULL,
                          NULL);
        break;
    case R_ADD_RMSNORM:
        st = binv_add_rmsnorm(ctx, q, c->dt, b, n, c->in, 0, n, c->res, 0, n, c->w, 0, eps, c->out,
                              0, n, 0, NULL, NULL);
        break;
    case R_LAYERNORM:
        st = binv_layernorm(ctx, q, c->dt, b, n, c->in, 0, n, c->w, 0, c->w2, 0, eps, c->out, 0, n,
                            0, NULL, NULL);
        break;
    case R_SOFTMAX:
        st = binv_softmax(ctx, q, c->dt, b, n, c->in, 0, n, c->out, 0, n, 0, NULL, NULL);
        break;
    case R_LOG_SOFTMAX:
        st = binv_log_softmax(ctx, q, c->dt, b, n, c->in, 0, n, c->out, 0, n, 0, NULL, NULL);
        break;
    default:
        st = binv_row_sum(ctx, q, c->dt, b, n, c->in, 0, n, c->out, 0, 0, NULL, NULL);
        break;
    }
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: %s: %s: %s\n", c->op, binv_status_string(st),
                binv_context_last_error(ctx));
        return -1;
    }
    return 0;
}

/* chunk_width: the invariant width, or the one the adaptive rule gives. */
static void rows_csv_row(FILE *f, const study *s, const op_case *c, impl_id impl, const point *p) {
    fprintf(f, "%s,%s,%s,%zu,%zu,%.9g,%.0f,%d,%.6f,%zu\n", c->op, IMPL_NAME[impl],
            hx_dtype_name(c->dt), p->batch, c->in_cols, p->max_abs, p->max_ulp,
            p->distinct_so_far, p->ms,
            impl == IMPL_ADAPTIVE ? hx_rows_adaptive_width(p->batch, c->in_cols, s->cus)
                                  : binv_rows_chunk_size(c->dt, c->in_cols));
}

/* The sweep's largest row count: past the adaptive schedule's switch (8 work
 * groups per compute unit, so 16 per unit covers it), at most 2^27 elements
 * per buffer. */
static size_t rows_max(const study *s, const options *o, size_t cols) {
    size_t want = o->max_rows;
    if (!want) {
        want = 32;
        while (want < 16 * s->cus && want < 4096) want *= 2;
    }
    size_t cap = ((size_t)1 << 27) / cols, m = 1;
    if (cap < 1) cap = 1;
    while (m * 2 <= want && m * 2 <= cap) m *= 2;
    return want <= cap ? want : m;
}

static int rows_run(study *s, const options *o, FILE *csv) {
    s->total = s->done = 0;
    for (int i = 0; i < NROWS_CASES; i++)
        for (int d = 0; d < NDTYPES; d++) s->total += 2 * dtype_wanted(o, DTYPES[d]);
    if (csv)
        fprintf(csv, "op,impl,dtype,rows,cols,max_abs_diff,max_ulp_diff,distinct_so_far,"
                     "ms_per_call,chunk_width\n");
    printf("\nRow reductions: row 0 fixed, batches of 1..N rows (adaptive pieces follow 8 x %zu "
           "compute units)\n", s->cus);
    print_series_header();
    int rc = 0;
    for (int i = 0; i < NROWS_CASES && !rc; i++) {
        const rows_case *rcase = &ROWS_CASES[i];
        const size_t cols = o->cols ? o->cols : rcase->cols;
        size_t bs[MAX_BATCHES], nb = hx_batch_sizes(rows_max(s, o, cols), bs, MAX_BATCHES);
        const size_t bmax = bs[nb - 1];
        for (int d = 0; d < NDTYPES && !rc; d++) {
            const binv_dtype dt = DTYPES[d];
            if (!dtype_wanted(o, dt)) continue;
            const size_t es = hx_dtype_size(dt);
            op_case c = {0};
            c.family = "rows";
            snprintf(c.op, sizeof c.op, "%s", rcase->name);
            snprintf(c.shape, sizeof c.shape, "cols=%zu", cols);
            c.rop = rcase->rop;
            c.dt = dt;
            c.out_dt = rcase->rop == R_ROW_SUM ? BINV_DTYPE_F32 : dt;
            c.in_cols = cols;
            c.out_cols = rcase->rop == R_ROW_SUM ? 1 : cols;
            c.scale = rcase->scale;
            c.call = rows_call;
            c.csv_row = rows_csv_row;
            unsigned char *h = malloc(bmax * cols * es);
            if (!h) return -1;
            c.in = buffer(s, bmax * cols * es, NULL);
            c.out = buffer(s, bmax * c.out_cols * hx_dtype_size(c.out_dt), NULL);
            if (!c.in || !c.out) rc = -1;
            /* Weights near 1 (norm gains), small biases; the residual stream
             * of add_rmsnorm is a batch input like x (its row 0 fixed). */
            if (!rc && (c.rop == R_RMSNORM || c.rop == R_ADD_RMSNORM || c.rop == R_LAYERNORM)) {
                fill(dt, h, cols, 11, 0.25f, 1.0f);
                if (!(c.w = buffer(s, cols * es, h))) rc = -1;
            }
            if (!rc && c.rop == R_LAYERNORM) {
                fill(dt, h, cols, 12, 0.1f, 0.0f);
                if (!(c.w2 = buffer(s, cols * es, h))) rc = -1;
            }
            if (!rc && c.rop == R_ADD_RMSNORM) {
                fill(dt, h, cols, 13, 1.0f, 0.0f);
                fill(dt, h + cols * es, (bmax - 1) * cols, 14, 1.0f, 0.0f);
                if (!(c.res = buffer(s, bmax * cols * es, h))) rc = -1;
                if (!(c.pristine = buffer(s, bmax * cols * es, NULL))) rc = -1;
            }
            free(h);
            if (!rc) rc = sweep(s, o, &c, IMPL_ADAPTIVE, bs, nb, csv);
            if (!rc) rc = sweep(s, o, &c, IMPL_INVARIANT, bs, nb, csv);
            release(&c.in);
            release(&c.out);
            release(&c.w);
            release(&c.w2);
            release(&c.res);
            release(&c.pristine);
        }
    }
    return rc;
}

/* ---- Run-to-run nondeterminism: float atomics ------------------------------ */

/* The usual float atomic add of OpenCL 1.2, which has none: a compare-and-
 * swap loop on the float's bits.  Each work-group first sums its 64 values
 * with a fixed local tree (deterministic), then adds its partial to one
 * global total with the CAS loop, as real reductions do; the order in which
 * the work-groups' additions land, and so the rounding, varies from run to
 * run.  (One atomic per element would serialise a GPU on one address.) */
static const char ATOMIC_SRC[] =
    "__kernel void atomic_sum(__global const float *x, uint n, volatile __global uint *acc) {\n"
    "    __local float s[64];\n"
    "    const uint i = get_global_id(0), l = get_local_id(0);\n"
    "    s[l] = i < n ? x[i] : 0.0f;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (uint h = 32; h > 0; h >>= 1) {\n"
    "        if (l < h) s[l] = s[l] + s[l + h];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (l != 0) return;\n"
    "    const float v = s[0];\n"
    "    uint old = *acc, seen;\n"
    "    do {\n"
    "        seen = old;\n"
    "        old = atomic_cmpxchg(acc, seen, as_uint(as_float(seen) + v));\n"
    "    } while (old != seen);\n"
    "}\n";

static int atomics_run(study *s, const options *o, FILE *csv) {
    const size_t n = o->atomic_n;
    const int R = o->atomic_repeats;
    cl_command_queue q = s->dev.queue;
    cl_int err;
    int rc = -1;
    float *hx = malloc(n * sizeof *hx);
    cl_mem x = NULL, acc = NULL, out = NULL;
    cl_program prog = NULL;
    cl_kernel kern = NULL;
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        free(s->atom[m].values);
        s->atom[m].values = calloc((size_t)R, sizeof(float));
        if (!s->atom[m].values) goto out;
    }
    if (!hx) goto out;
    s->atom[0].name = "atomic_cmpxchg float add";
    s->atom[1].name = "binv_row_sum (invariant)";
    s->atom[2].name = "binv_row_sum (adaptive)";
    fill(BINV_DTYPE_F32, hx, n, 21, 1.0f, 0.0f);
    s->atom_ref = hx_sum_ref(hx, n);
    s->atom_n = n;
    s->atom_repeats = R;
    printf("\nRun-to-run: sum of %zu floats, %d runs on the same input\n", n, R);
    const char *src = ATOMIC_SRC;
    prog = clCreateProgramWithSource(s->dev.context, 1, &src, NULL, &err);
    if (err == CL_SUCCESS) err = clBuildProgram(prog, 1, &s->dev.device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        if (prog)
            clGetProgramBuildInfo(prog, s->dev.device, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        fprintf(stderr, "error: building the atomics kernel: %d\n%s\n", (int)err, log);
        goto out;
    }
    kern = clCreateKernel(prog, "atomic_sum", &err);
    x = buffer(s, n * sizeof(float), hx);
    acc = buffer(s, sizeof(cl_uint), NULL);
    out = buffer(s, sizeof(float), NULL);
    if (err != CL_SUCCESS || !x || !acc || !out) goto out;
    cl_uint un = (cl_uint)n;
    clSetKernelArg(kern, 0, sizeof x, &x);
    clSetKernelArg(kern, 1, sizeof un, &un);
    clSetKernelArg(kern, 2, sizeof acc, &acc);
    const size_t lws = 64, gws = (n + lws - 1) / lws * lws;
    if (csv) fprintf(csv, "method,run,value,diff_from_ref\n");
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        hx_hashset seen = {0};
        double t0 = 0;
        /* Run -1 warms up (builds the kernels) and is not counted. */
        for (int r = -1; r < R; r++) {
            float v = 0.0f;
            if (r == 0) t0 = hx_now_s();
            if (s->tty) {
                fprintf(stderr, "\r\033[K%s: run %d/%d", s->atom[m].name, r + 1, R);
                fflush(stderr);
            }
            if (m == 0) {
                const cl_uint zero = 0; /* the bits of +0.0f */
                err = clEnqueueWriteBuffer(q, acc, CL_FALSE, 0, sizeof zero, &zero, 0, NULL, NULL);
                if (err == CL_SUCCESS)
                    err = clEnqueueNDRangeKernel(q, kern, 1, NULL, &gws, &lws, 0, NULL, NULL);
                if (err == CL_SUCCESS)
                    err = clEnqueueReadBuffer(q, acc, CL_TRUE, 0, sizeof v, &v, 0, NULL, NULL);
                if (err != CL_SUCCESS) {
                    fprintf(stderr, "error: atomic_sum: %d\n", (int)err);
                    hx_hashset_free(&seen);
                    goto out;
                }
            } else {
                binv_context *ctx = m == 1 ? s->inv : s->adapt;
                binv_status st = binv_row_sum(ctx, q, BINV_DTYPE_F32, 1, n, x, 0, n, out, 0, 0,
                                              NULL, NULL);
                if (st != BINV_SUCCESS) {
                    fprintf(stderr, "error: binv_row_sum: %s: %s\n", binv_status_string(st),
                            binv_context_last_error(ctx));
                    hx_hashset_free(&seen);
                    goto out;
                }
                clEnqueueReadBuffer(q, out, CL_TRUE, 0, sizeof v, &v, 0, NULL, NULL);
            }
            if (r < 0) continue;
            s->atom[m].values[r] = v;
            hx_hashset_add(&seen, &v, sizeof v);
            if (csv)
                fprintf(csv, "%s,%d,%.9g,%.9g\n", s->atom[m].name, r, (double)v,
                        (double)v - s->atom_ref);
        }
        s->atom[m].ms = (hx_now_s() - t0) / R * 1e3; /* includes the read back */
        s->atom[m].distinct = seen.count;
        hx_hashset_free(&seen);
        if (s->tty) fprintf(stderr, "\r\033[K");
        float lo = s->atom[m].values[0], hi = lo;
        for (int r = 1; r < R; r++) {
            if (s->atom[m].values[r] < lo) lo = s->atom[m].values[r];
            if (s->atom[m].values[r] > hi) hi = s->atom[m].values[r];
        }
        printf("  %-26s distinct results %3d of %d   range [%.9g, %.9g]   %8.3f ms/run\n",
               s->atom[m].name, s->atom[m].distinct, R, (double)lo, (double)hi, s->atom[m].ms);
    }
    printf("  reference (compensated f64): %.9g\n", s->atom_ref);
    s->atom_ran = 1;
    rc = 0;
out:
    if (kern) clReleaseKernel(kern);
    if (prog) clReleaseProgram(prog);
    release(&x);
    release(&acc);
    release(&out);
    free(hx);
    return rc;
}

/* ---- Report ------------------------------------------------------------------ */

static size_t count_series(const study *s, const char *family, int impl, int varying) {
    size_t c = 0;
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && (impl < 0 || s->ser[i].impl == (impl_id)impl) &&
            (!varying || s->ser[i].distinct > 1))
            c++;
    return c;
}

static void summary_table(FILE *f, const study *s, const char *family, const char *batch) {
    fprintf(f, "| op | shape | implementation | dtype | distinct outputs | max abs diff | max ulp "
               "diff | run-to-run deterministic | ms/call at %s = 1 | ms/call at the largest %s |\n"
               "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |\n",
            batch, batch);
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        fprintf(f, "| %s | %s | %s | %s | %s%d%s | %.3g | %.0f | %s | %.3f | %.3f |\n", r->op,
                r->shape, IMPL_NAME[r->impl], hx_dtype_name(r->dtype),
                r->distinct > 1 ? "**" : "", r->distinct, r->distinct > 1 ? "**" : "", r->max_abs,
                r->max_ulp, r->deterministic ? "yes" : "**no**", r->pts[0].ms,
                r->pts[r->npts - 1].ms);
    }
}

/* Max ulp of row 0 against batch 1, one column per batch size ("=" where the
 * bits are identical); with_width adds the adaptive rule's chunk widths. */
static void batch_matrix(FILE *f, const study *s, const char *family, const char *batch,
                         int with_width) {
    const series *first = NULL;
    for (size_t i = 0; i < s->nser && !first; i++)
        if (!strcmp(s->ser[i].family, family)) first = &s->ser[i];
    if (!first) return;
    /* The widest sweep gives the columns (rows sweeps of very long rows may
     * be shorter: memory cap). */
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].npts > first->npts) first = &s->ser[i];
    fprintf(f, "| op | shape | implementation | dtype |");
    for (size_t j = 0; j < first->npts; j++) fprintf(f, " %s=%zu |", batch, first->pts[j].batch);
    fprintf(f, "\n| --- | --- | --- | --- |");
    for (size_t j = 0; j < first->npts; j++) fprintf(f, " ---: |");
    fprintf(f, "\n");
    char last[80] = "";
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        char key[80];
        snprintf(key, sizeof key, "%s %s", r->op, r->shape);
        if (with_width && strcmp(key, last)) {
            /* Once per op and shape: the chunk width the adaptive rule gives. */
            fprintf(f, "| %s | %s | *adaptive chunk width (rule)* | |", r->op, r->shape);
            for (size_t j = 0; j < first->npts; j++) {
                if (j < r->npts)
                    fprintf(f, " *%zu* |",
                            hx_rows_adaptive_width(r->pts[j].batch, r->cols, s->cus));
                else
                    fprintf(f, " |");
            }
            fprintf(f, "\n");
        }
        memcpy(last, key, sizeof last);
        fprintf(f, "| %s | %s | %s | %s |", r->op, r->shape, IMPL_NAME[r->impl],
                hx_dtype_name(r->dtype));
        for (size_t j = 0; j < first->npts; j++) {
            if (j >= r->npts) fprintf(f, " |");
            else if (r->pts[j].max_ulp == 0 && r->pts[j].max_abs == 0) fprintf(f, " = |");
            else fprintf(f, " %.0f |", r->pts[j].max_ulp);
        }
        fprintf(f, "\n");
    }
}

/* Lists the series whose row 0 took more than one bit pattern. */
static void varying_list(FILE *f, const study *s, const char *family) {
    int any = 0;
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family) || r->distinct < 2) continue;
        fprintf(f, "%s%s %s %s %s (%d patterns, up to %.0f ulp)", any ? "; " : "", r->op,
                r->shape, IMPL_NAME[r->impl], hx_dtype_name(r->dtype), r->distinct, r->max_ulp);
        any = 1;
    }
    if (!any) fprintf(f, "none");
}

static void gemm_report(FILE *f, const study *s, const options *o) {
    gemm_shape sh[2];
    size_t ns = gemm_shapes(o, sh);
    fprintf(f, "## GEMM: one request alone vs inside a batch\n\n"
               "C[m, n] = A[m, k] · W[n, k]ᵀ for ");
    for (size_t i = 0; i < ns; i++)
        fprintf(f, "%sn = %zu, k = %zu — %s", i ? "; " : "", sh[i].n, sh[i].k, sh[i].what);
    fprintf(f, ". Row 0 of A is the same request in every batch; rows 1..m-1 are other requests, "
               "different for every m. Each row of the table: how far row 0 of C moved from its "
               "m = 1 value over all batch sizes, how many distinct bit patterns it took, and "
               "whether %d repeated calls at the largest m gave identical bits for all of C.\n\n",
            o->repeats);
    summary_table(f, s, "gemm", "m");
    fprintf(f, "\n**Source of the variance.** A shape-adaptive GEMM chooses how many pieces to "
               "split the k reduction into from the shape and the device: when the output tiles "
               "are too few to fill the compute units (small m, narrow n) it splits k into more "
               "pieces, whose partial sums are added in a different grouping, so row 0's rounding "
               "changes with m. libbinv adaptive does exactly that (pieces = 2·CUs / tiles, "
               "docs/schedules.md). libbinv invariant cuts k at fixed boundaries "
               "(binv_gemm_chunk_size: %zu for k = %zu) whatever m is and adds the chunk partials "
               "in a fixed order: small batches still split k, along the same boundaries.\n\n",
            binv_gemm_chunk_size(BINV_DTYPE_F32, o->k), o->k);
    fprintf(f, "**Measured on this device** (%zu compute units), series whose row 0 changed with "
               "m: ", s->cus);
    varying_list(f, s, "gemm");
    fprintf(f, ". Invariant series with more than one pattern: %zu of %zu. A shape that shows one "
               "pattern for an adaptive implementation is one where its split never changed over "
               "these m on this device (e.g. the tiles fill a device with few compute units); "
               "that is what was measured, not an assumption. Large ulp counts come from outputs "
               "near 0 (sums that cancel), where one ulp is tiny: max |diff| gives the scale.\n\n",
            count_series(s, "gemm", IMPL_INVARIANT, 1), count_series(s, "gemm", IMPL_INVARIANT, 0));
    fprintf(f, "Max ulp of row 0 against m = 1 (`=`: bit-identical):\n\n");
    batch_matrix(f, s, "gemm", "m", 0);
    fprintf(f, "\nPer batch size: `gemm.csv`. Plots: `gemm_maxdiff.png` (max |diff| against m), "
               "`gemm_distinct.png` (distinct outputs per implementation).\n\n"
               "![gemm max diff](gemm_maxdiff.png)\n![gemm distinct](gemm_distinct.png)\n\n");
}

static void rows_report(FILE *f, const study *s, const options *o) {
    fprintf(f, "## Row reductions: one row alone vs inside a batch of rows\n\n"
               "rmsnorm, add_rmsnorm, layernorm, softmax, log_softmax and row_sum of row 0 "
               "computed alone and as row 0 of batches of rows (the other rows hold other "
               "requests, different for every batch size). Widths: ");
    for (int i = 0; i < NROWS_CASES; i++)
        fprintf(f, "%s%s %zu (%s)", i ? ", " : "", ROWS_CASES[i].name,
                o->cols ? o->cols : ROWS_CASES[i].cols, ROWS_CASES[i].what);
    fprintf(f, ". Outputs are compared in their dtype (row_sum: the f32 sum). Run-to-run: %d "
               "repeated calls at the largest batch.\n\n",
            o->repeats);
    summary_table(f, s, "rows", "rows");
    fprintf(f, "\n**Source of the variance.** A row is reduced by lanes, a work-group tree and "
               "a combination of pieces. A throughput-tuned library picks the pieces from the "
               "batch: when there are fewer rows than the work-groups that fill the device, each "
               "row is cut into more, shorter pieces (split-K by row count), which changes every "
               "lane's slice and so the rounding. libbinv adaptive does that: ceil(8·CUs / rows) "
               "pieces, at least one per 1024 values, at most 32× that (docs/schedules.md). On "
               "this device 8·CUs = %zu, so a row of cols values is split further only while "
               "rows < %zu and ceil(cols / 1024) < %zu: the *adaptive chunk width (rule)* lines "
               "below give the width the rule yields for each batch. libbinv invariant always uses "
               "1024-value chunks of 32 lanes, the same tree and a left-to-right combination, "
               "whichever kernel (fused, or split over work-groups for few long rows) runs.\n\n",
            8 * s->cus, 8 * s->cus, 8 * s->cus);
    fprintf(f, "**Measured on this device** (%zu compute units), series whose row 0 changed "
               "with the row count: ", s->cus);
    varying_list(f, s, "rows");
    fprintf(f, ". Invariant series with more than one pattern: %zu of %zu.\n\n",
            count_series(s, "rows", IMPL_INVARIANT, 1), count_series(s, "rows", IMPL_INVARIANT, 0));
    /* Say, per op and width, where the adaptive schedule did not vary here,
     * and whether the rule explains it (one width for every row count) or
     * the rounding to the output absorbed different widths. */
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, "rows") || r->impl != IMPL_ADAPTIVE) continue;
        int seen_before = 0;
        for (size_t j = 0; j < i && !seen_before; j++)
            seen_before = s->ser[j].impl == IMPL_ADAPTIVE && !strcmp(s->ser[j].family, "rows") &&
                          !strcmp(s->ser[j].op, r->op) && !strcmp(s->ser[j].shape, r->shape);
        if (seen_before) continue;
        char dts[32] = "";
        int nvar = 0, ninv = 0;
        for (size_t j = i; j < s->nser; j++) {
            const series *q = &s->ser[j];
            if (q->impl != IMPL_ADAPTIVE || strcmp(q->family, "rows") || strcmp(q->op, r->op) ||
                strcmp(q->shape, r->shape))
                continue;
            if (q->distinct > 1) {
                nvar++;
                continue;
            }
            ninv++;
            append(dts, sizeof dts, "%s%s", *dts ? ", " : "", hx_dtype_name(q->dtype));
        }
        size_t widths = 1;
        for (size_t j = 1; j < r->npts; j++)
            widths += hx_rows_adaptive_width(r->pts[j].batch, r->cols, s->cus) !=
                      hx_rows_adaptive_width(r->pts[j - 1].batch, r->cols, s->cus);
        if (!ninv) continue;
        if (widths == 1)
            fprintf(f, "- %s %s: adaptive is batch-invariant on this device (%s) — the rule "
                       "gives %zu-value chunks for every row count here: the row alone has more "
                       "pieces than the %zu work-groups that fill the device.\n",
                    r->op, r->shape, dts, hx_rows_adaptive_width(1, r->cols, s->cus),
                    8 * s->cus);
        else
            fprintf(f, "- %s %s: adaptive used %zu chunk widths over these row counts, yet row 0 "
                       "kept one bit pattern in %s%s: the different groupings did not change the "
                       "rounded output here (measured; one pattern does not make a schedule "
                       "invariant).\n",
                    r->op, r->shape, widths, dts, nvar ? " (other dtypes varied)" : "");
    }
    fprintf(f, "\nMax ulp of row 0 against rows = 1 (`=`: bit-identical):\n\n");
    batch_matrix(f, s, "rows", "rows", 1);
    fprintf(f, "\nPer batch size: `rows.csv` (chunk_width: the invariant width, or the adaptive "
               "rule's). Plots: `rows_maxdiff.png`, `rows_distinct.png`.\n\n"
               "![rows max diff](rows_maxdiff.png)\n![rows distinct](rows_distinct.png)\n\n");
}

static void atomics_report(FILE *f, const study *s, const options *o) {
    (void)o;
    fprintf(f, "## Run-to-run nondeterminism: float atomics\n\n"
               "A different effect from batch variance: the *same* call on the *same* input "
               "giving different bits from one run to the next. The usual way to sum into one "
               "float in OpenCL 1.2 (which has no float atomic add) is a compare-and-swap loop on "
               "the float's bits (`atomic_cmpxchg` on `volatile __global uint *`, a kernel defined "
               "in binv-study, not in the library); every work-item adds its element to one "
               "total. The additions happen in the order the swaps land, which depends on "
               "scheduling and timing, so the rounding can differ run to run. Below: the sum of "
               "%zu uniform(-1, 1) floats, %d runs each, against binv_row_sum of the same vector "
               "(rows = 1, cols = %zu) in both schedules. Reference: compensated f64 sum "
               "%.9g.\n\n",
            s->atom_n, s->atom_repeats, s->atom_n, s->atom_ref);
    fprintf(f, "| method | runs | distinct results | min | max | max − min | max \\|result − "
               "reference\\| | ms/run |\n"
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        const atomic_method *a = &s->atom[m];
        float lo = a->values[0], hi = lo;
        double err = 0;
        for (int r = 0; r < s->atom_repeats; r++) {
            if (a->values[r] < lo) lo = a->values[r];
            if (a->values[r] > hi) hi = a->values[r];
            double e = fabs((double)a->values[r] - s->atom_ref);
            if (e > err) err = e;
        }
        fprintf(f, "| %s | %d | %s%d%s | %.9g | %.9g | %.3g | %.3g | %.3f |\n", a->name,
                s->atom_repeats, a->distinct > 1 ? "**" : "", a->distinct,
                a->distinct > 1 ? "**" : "", (double)lo, (double)hi, (double)hi - (double)lo, err,
                a->ms);
    }
    const int ad = s->atom[0].distinct;
    fprintf(f, "\n**Measured on this device:** the atomic sum gave %d distinct result%s in %d "
               "runs%s; binv_row_sum gave %d (invariant) and %d (adaptive). ",
            ad, ad == 1 ? "" : "s", s->atom_repeats,
            ad == 1 ? " — here the order of the swaps happened to repeat (few threads picking "
                      "work-groups in a repeatable order); it is not guaranteed, and on a GPU "
                      "thousands of work-items race for the same word"
                    : "",
            s->atom[1].distinct, s->atom[2].distinct);
    fprintf(f, "Every binv reduction, adaptive included, has a fixed order for a given call: the "
               "adaptive schedule varies with the *batch* (previous sections), never from run "
               "to run; the invariant one varies with neither. Per run: `atomics.csv`. Plot: "
               "`atomics.png` (result − reference per run).\n\n![atomics](atomics.png)\n\n");
}

/* ---- Plots (gnuplot) --------------------------------------------------------- */

static const int DT_POINT[] = {7, 5, 9}; /* f32 circle, f16 square, bf16 triangle */
static const int DT_DASH[] = {1, 2, 3};

static int dtype_index(binv_dtype dt) {
    return dt == BINV_DTYPE_F32 ? 0 : dt == BINV_DTYPE_F16 ? 1 : 2;
}

static int family_has(const study *s, const char *family, int impl, int d) {
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].impl == (impl_id)impl &&
            dtype_index(s->ser[i].dtype) == d)
            return 1;
    return 0;
}

/* One panel of max |diff| plots: an op at one shape. */
typedef struct panel {
    const char *op;
    char shape[40];
    size_t key5; /* CSV column 5 (gemm: n, rows: cols) of this shape */
} panel;

/* Max |diff| (CSV column diff_col) against batch: a panel per op and shape,
 * a line per (implementation, dtype), one shared legend in the last cell.
 * CSV columns: op 1, impl 2, dtype 3, batch 4, key5 5.  The y range is the
 * same in every panel so that panels compare; bit-identical is drawn at
 * FLOOR. */
static void plot_maxdiff(FILE *g, const study *s, const char *family, const char *csv,
                         const char *png, const char *title, const char *xlabel,
                         const panel *p, int np, int diff_col) {
    const int ncol = np + 1 < 3 ? np + 1 : 3, nrow = (np + 1 + ncol - 1) / ncol;
    fprintf(g, "set terminal pngcairo size %d,%d noenhanced\nset output '%s'\n"
               "set multiplot layout %d,%d title '%s'\n",
            460 * ncol + 40, 340 * nrow + 40, png, nrow, ncol, title);
    fprintf(g, "set logscale x 2\nset logscale y\nset grid\nunset key\nset xlabel '%s'\n"
               "set ylabel 'max |diff| from batch 1'\nset yrange [3e-17:10]\n"
               "set ytics 1e-16, 100 format '%%.0e'\nset ytics add ('identical' FLOOR)\n"
               "set mytics 1\n",
            xlabel);
    for (int k = 0; k < np; k++) {
        fprintf(g, "set title '%s %s'\nplot ", p[k].op, p[k].shape);
        int first = 1;
        for (size_t i = 0; i < s->nser; i++) {
            const series *r = &s->ser[i];
            if (strcmp(r->family, family) || strcmp(r->op, p[k].op) || strcmp(r->shape, p[k].shape))
                continue;
            int d = dtype_index(r->dtype);
            fprintf(g, "%s'%s' using (strcol(1) eq '%s' && strcol(2) eq '%s' && strcol(3) eq '%s' "
                       "&& $5 == %zu ? $4 : 1/0):($%d > 0 ? $%d : FLOOR) with linespoints "
                       "lc rgb '%s' pt %d dt %d ps 1.2 notitle",
                    first ? "" : ", \\\n     ", csv, p[k].op, IMPL_NAME[r->impl],
                    hx_dtype_name(r->dtype), p[k].key5, diff_col, diff_col,
                    IMPL_COLOR[r->impl], DT_POINT[d], DT_DASH[d]);
            first = 0;
        }
        fprintf(g, "%s\n", first ? "NaN notitle" : "");
    }
    /* The legend cell. */
    fprintf(g, "unset border\nunset tics\nunset xlabel\nunset ylabel\nunset title\nunset grid\n"
               "unset logscale\nset xrange [0:1]\nset yrange [0:1]\n"
               "set key center center font ',12' spacing 1.4\nplot ");
    int first = 1;
    for (int impl = 0; impl < IMPL_COUNT; impl++)
        for (int d = 0; d < NDTYPES; d++) {
            if (!family_has(s, family, impl, d)) continue;
            fprintf(g, "%sNaN with linespoints lc rgb '%s' pt %d dt %d ps 1.2 title '%s %s'",
                    first ? "" : ", ", IMPL_COLOR[impl], DT_POINT[d], DT_DASH[d], IMPL_NAME[impl],
                    hx_dtype_name(DTYPES[d]));
            first = 0;
        }
    fprintf(g, "%s\nunset multiplot\nset border\nset tics\nset xrange [*:*]\nset yrange [*:*]\n"
               "set ytics autofreq format '%%g'\nset mytics default\nunset key\nset key\n",
            first ? "NaN notitle" : "");
}

/* Distinct outputs per implementation: a bar per (implementation, dtype),
 * grouped by op and shape, from an inline data block (x, distinct, impl,
 * dtype index). */
static void plot_distinct(FILE *g, const study *s, const char *family, const char *png,
                          const char *title) {
    fprintf(g, "$%s << EOD\n", family);
    char last[80] = "", tics[4096] = "";
    double x = -1, gstart = 0;
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        char key[80];
        snprintf(key, sizeof key, "%s %s", r->op, r->shape);
        if (strcmp(key, last)) { /* a new group: one empty slot between groups */
            if (*last) append(tics, sizeof tics, "%s'%s' %.1f", *tics ? ", " : "", last,
                              (gstart + x) / 2);
            x += *last ? 2 : 1;
            gstart = x;
            memcpy(last, key, sizeof last);
        } else {
            x += 1;
        }
        fprintf(g, "%.1f %d %d %d\n", x, r->distinct, (int)r->impl, dtype_index(r->dtype));
    }
    if (*last) append(tics, sizeof tics, "%s'%s' %.1f", *tics ? ", " : "", last, (gstart + x) / 2);
    fprintf(g, "EOD\n");
    int top = 1;
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].distinct > top) top = s->ser[i].distinct;
    fprintf(g, "set output '%s'\nset title '%s'\nunset logscale\n"
               "set style fill solid 0.85 border -1\nset boxwidth 0.8\n"
               "set xtics (%s) nomirror rotate by -20 left\n"
               "set ylabel 'distinct bit patterns of row 0'\nset yrange [0:%d.5]\nset ytics 1\n"
               "set grid ytics\n"
               "set xrange [-1:%.1f]\nset key outside right font ',10'\nset xlabel ''\n",
            png, title, tics, top, x + 1);
    fprintf(g, "set datafile separator whitespace\nplot ");
    int first = 1;
    for (int impl = 0; impl < IMPL_COUNT; impl++)
        for (int d = 0; d < NDTYPES; d++) {
            int present = 0;
            for (size_t i = 0; i < s->nser && !present; i++)
                present = !strcmp(s->ser[i].family, family) && s->ser[i].impl == (impl_id)impl &&
                          dtype_index(s->ser[i].dtype) == d;
            if (!present) continue;
            /* dtype by fill pattern density: solid f32, lighter f16, lightest bf16 */
            fprintf(g, "%s$%s using ($3 == %d && $4 == %d ? $1 : 1/0):2 with boxes lc rgb '%s' "
                       "fs solid %.2f title '%s %s'",
                    first ? "" : ", \\\n     ", family, impl, d, IMPL_COLOR[impl],
                    d == 0 ? 0.9 : d == 1 ? 0.55 : 0.25, IMPL_NAME[impl],
                    hx_dtype_name(DTYPES[d]));
            first = 0;
        }
    if (first) fprintf(g, "NaN notitle");
    fprintf(g, "\nset datafile separator ','\nunset xtics\nset xtics\nset yrange [*:*]\n"
               "set xrange [*:*]\nset xtics norotate\nset ytics autofreq\n");
}

static void gemm_plot(FILE *g, const study *s, const options *o) {
    gemm_shape sh[2];
    size_t ns = gemm_shapes(o, sh);
    panel p[2];
    for (size_t i = 0; i < ns; i++) {
        p[i].op = "gemm";
        snprintf(p[i].shape, sizeof p[i].shape, "n=%zu k=%zu", sh[i].n, sh[i].k);
        p[i].key5 = sh[i].n;
    }
    char csv[4200], png[4200];
    snprintf(csv, sizeof csv, "%s/gemm.csv", o->out);
    snprintf(png, sizeof png, "%s/gemm_maxdiff.png", o->out);
    plot_maxdiff(g, s, "gemm", csv, png, "GEMM: row 0 of C against its m = 1 value", "batch size m",
                 p, (int)ns, 7);
    snprintf(png, sizeof png, "%s/gemm_distinct.png", o->out);
    fprintf(g, "set terminal pngcairo size 1000,520 noenhanced\n");
    plot_distinct(g, s, "gemm", png, "GEMM: distinct outputs of the same request over batch sizes");
}

static void rows_plot(FILE *g, const study *s, const options *o) {
    panel p[NROWS_CASES];
    for (int i = 0; i < NROWS_CASES; i++) {
        p[i].op = ROWS_CASES[i].name;
        p[i].key5 = o->cols ? o->cols : ROWS_CASES[i].cols;
        snprintf(p[i].shape, sizeof p[i].shape, "cols=%zu", p[i].key5);
    }
    char csv[4200], png[4200];
    snprintf(csv, sizeof csv, "%s/rows.csv", o->out);
    snprintf(png, sizeof png, "%s/rows_maxdiff.png", o->out);
    plot_maxdiff(g, s, "rows", csv, png, "Row reductions: row 0 against its rows = 1 value",
                 "rows in the batch", p, NROWS_CASES, 6);
    snprintf(png, sizeof png, "%s/rows_distinct.png", o->out);
    fprintf(g, "set terminal pngcairo size 1300,560 noenhanced\n");
    plot_distinct(g, s, "rows", png, "Row reductions: distinct outputs of row 0 over batch sizes");
}

static void atomics_plot(FILE *g, const study *s, const options *o) {
    fprintf(g, "set terminal pngcairo size 900,520 noenhanced\nset output '%s/atomics.png'\n"
               "unset logscale\nset grid\nset key outside right\nset title 'Sum of %zu floats, "
               "%d runs on the same input: result - reference'\n"
               "set xlabel 'run'\nset ylabel 'result - f64 reference'\nset xrange [-1:%d]\n",
            o->out, s->atom_n, s->atom_repeats, s->atom_repeats);
    static const char *color[] = {"#ff7f0e", "#1f77b4", "#d62728"};
    static const int pt[] = {7, 5, 9};
    fprintf(g, "plot ");
    for (int m = 0; m < ATOMIC_METHODS; m++)
        fprintf(g, "%s'%s/atomics.csv' using (strcol(1) eq '%s' ? $2 : 1/0):4 with linespoints "
                   "lc rgb '%s' pt %d ps 1.3 title '%s'",
                m ? ", \\\n     " : "", o->out, s->atom[m].name, color[m], pt[m], s->atom[m].name);
    fprintf(g, "\nset xrange [*:*]\n");
}

/* ---- Attention ------------------------------------------------------------------
 * Sequence 0 (its prompt of L tokens: queries, keys, values) is fixed.
 * Decode sweep: its last token is decoded in a step with b - 1 other
 * sequences of other lengths (different for every b); the pages of every
 * sequence are written straight into the pools (the layout is public), so a
 * call is binv_attention alone.  Prefill sweep: the same token computed in a
 * one-shot prefill of the prompt, in chunked prefills, and as a decode step
 * after the prompt is cached (binv_kv_append and binv_attention per step). */

typedef struct attn_study {
    size_t heads, kvh, D, L, pages, max_pages;
    binv_dtype dt;
    cl_mem k, v;               /* pools */
    binv_kv_batch *batch[2];   /* per context (a batch belongs to one) */
    size_t nseq;
    cl_uint *ql, *cl, *pt;     /* step metadata */
} attn_study;

static void attn_drop_batches(attn_study *a) {
    for (int i = 0; i < 2; i++) {
        binv_kv_batch_destroy(a->batch[i]);
        a->batch[i] = NULL;
    }
}

/* Pools for b sequences: sequence 0 is the fixed prompt (the same keys and
 * values for every b), the others short random sequences (<= OTHER_MAX
 * tokens, seeded by b).  Built on the host, written in one transfer each. */
#define OTHER_MAX 512
static int attn_prepare(study *s, const op_case *c, size_t b) {
    attn_study *a = c->user;
    const size_t es = hx_dtype_size(a->dt), kvd = a->kvh * a->D, P = BINV_KV_PAGE_SIZE;
    const size_t bytes = a->pages * P * kvd * es;
    attn_drop_batches(a);
    uint64_t r = 7000 + b;
    a->nseq = b;
    unsigned char *hk = calloc(bytes, 1), *hv = calloc(bytes, 1);
    int rc = !hk || !hv;
    size_t page = 0;
    for (size_t q = 0; q < b && !rc; q++) {
        const size_t len = q == 0 ? a->L : 1 + (size_t)(hx_rng_next(&r) % OTHER_MAX);
        a->ql[q] = 1;
        a->cl[q] = (cl_uint)len;
        for (size_t t = 0; t < len; t++) {
            if (t % P == 0) a->pt[q * a->max_pages + t / P] = (cl_uint)page++;
            const size_t slot = (size_t)a->pt[q * a->max_pages + t / P] * P + t % P;
            fill(a->dt, hk + slot * kvd * es, kvd, q == 0 ? 100000 + 2 * t : hx_rng_next(&r),
                 1.0f, 0.0f);
            fill(a->dt, hv + slot * kvd * es, kvd, q == 0 ? 100000 + 2 * t + 1 : hx_rng_next(&r),
                 1.0f, 0.0f);
        }
    }
    if (!rc)
        rc = clEnqueueWriteBuffer(s->dev.queue, a->k, CL_TRUE, 0, bytes, hk, 0, NULL, NULL) ||
             clEnqueueWriteBuffer(s->dev.queue, a->v, CL_TRUE, 0, bytes, hv, 0, NULL, NULL);
    free(hk);
    free(hv);
    if (rc) fprintf(stderr, "error: writing the KV pools\n");
    return rc ? -1 : 0;
}

static int attn_call(study *s, const op_case *c, impl_id impl, size_t b) {
    attn_study *a = c->user;
    const int ci = impl == IMPL_ADAPTIVE;
    binv_context *ctx = ci ? s->adapt : s->inv;
    binv_status st = BINV_SUCCESS;
    if (!a->batch[ci])
        st = binv_kv_batch_create(ctx, s->dev.queue, a->pages, b, a->ql, a->cl, a->pt,
                                  a->max_pages, &a->batch[ci]);
    const binv_kv_cache cache = {a->dt, a->pages, a->kvh, a->D, a->k, a->v};
    const size_t ld = a->heads * a->D;
    if (st == BINV_SUCCESS)
        st = binv_attention(ctx, s->dev.queue, &cache, a->batch[ci], a->heads,
                            1.0f / sqrtf((float)a->D), c->in, 0, ld, c->out, 0, ld, 0, NULL, NULL);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: attention: %s: %s\n", binv_status_string(st),
                binv_context_last_error(ctx));
        return -1;
    }
    return 0;
}

static void attn_csv_row(FILE *f, const study *s, const op_case *c, impl_id impl, const point *p) {
    (void)s;
    const attn_study *a = c->user;
    fprintf(f, "%s,%s,%s,%zu,%zu,%.9g,%.0f,%d,%.6f\n", c->op, IMPL_NAME[impl],
            hx_dtype_name(c->dt), p->batch, a->L, p->max_abs, p->max_ulp, p->distinct_so_far,
            p->ms);
}

/* The prefill sweep for one context: token L-1 of sequence 0 computed with
 * chunk sizes `chunks` (0: prefill L-1 tokens, then decode the last). */
static int attn_prefill_series(study *s, const options *o, attn_study *a, impl_id impl,
                               FILE *csv) {
    binv_context *ctx = impl == IMPL_ADAPTIVE ? s->adapt : s->inv;
    const size_t es = hx_dtype_size(a->dt), qd = a->heads * a->D, kvd = a->kvh * a->D;
    const size_t L = a->L, chunks[] = {L, 1024, 256, 100, 17, 0};
    unsigned char *hq = malloc(L * qd * es), *hk = malloc(L * kvd * es), *hv = malloc(L * kvd * es);
    unsigned char *ref = malloc(qd * es), *row = malloc(qd * es);
    cl_mem q = NULL, k = NULL, v = NULL, out = NULL;
    hx_hashset seen = {0};
    series *r = new_series(s);
    int rc = -1;
    if (!hq || !hk || !hv || !ref || !row || !r) goto out;
    r->family = "attention";
    snprintf(r->op, sizeof r->op, "prefill-chunk");
    snprintf(r->shape, sizeof r->shape, "L=%zu h=%zu/%zu d=%zu", L, a->heads, a->kvh, a->D);
    r->impl = impl;
    r->dtype = a->dt;
    r->deterministic = 1;
    fill(a->dt, hq, L * qd, 1, 1.0f, 0.0f);
    for (size_t t = 0; t < L; t++) {
        fill(a->dt, hk + t * kvd * es, kvd, 100000 + 2 * t, 1.0f, 0.0f);
        fill(a->dt, hv + t * kvd * es, kvd, 100000 + 2 * t + 1, 1.0f, 0.0f);
    }
    q = buffer(s, L * qd * es, hq);
    k = buffer(s, L * kvd * es, hk);
    v = buffer(s, L * kvd * es, hv);
    out = buffer(s, L * qd * es, NULL);
    if (!q || !k || !v || !out) goto out;
    const binv_kv_cache cache = {a->dt, a->pages, a->kvh, a->D, a->k, a->v};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        const size_t chunk = chunks[ci];
        if (chunk > L) continue;
        double t0 = hx_now_s();
        size_t done = 0;
        while (done < L) {
            size_t n = chunk ? (chunk < L - done ? chunk : L - done) : (done == 0 ? L - 1 : 1);
            cl_uint ql = (cl_uint)n, cl = (cl_uint)(done + n);
            binv_kv_batch *b = NULL;
            binv_status st = binv_kv_batch_create(ctx, s->dev.queue, a->pages, 1, &ql, &cl, a->pt,
                                                  a->max_pages, &b);
            if (st == BINV_SUCCESS)
                st = binv_kv_append(ctx, s->dev.queue, &cache, b, k, done * kvd, kvd, v,
                                    done * kvd, kvd, 0, NULL, NULL);
            if (st == BINV_SUCCESS)
                st = binv_attention(ctx, s->dev.queue, &cache, b, a->heads,
                                    1.0f / sqrtf((float)a->D), q, done * qd, qd, out, done * qd,
                                    qd, 0, NULL, NULL);
            binv_kv_batch_destroy(b);
            if (st != BINV_SUCCESS) {
                fprintf(stderr, "error: prefill: %s\n", binv_context_last_error(ctx));
                goto out;
            }
            done += n;
        }
        clFinish(s->dev.queue);
        const double ms = (hx_now_s() - t0) * 1e3;
        clEnqueueReadBuffer(s->dev.queue, out, CL_TRUE, (L - 1) * qd * es, qd * es, row, 0, NULL,
                            NULL);
        if (ci == 0) memcpy(ref, row, qd * es);
        hx_diff d = hx_compare(a->dt, ref, row, qd);
        hx_hashset_add(&seen, row, qd * es);
        if (d.max_abs > r->max_abs) r->max_abs = d.max_abs;
        if (d.max_ulp > r->max_ulp) r->max_ulp = d.max_ulp;
        r->pts[r->npts++] = (point){chunk ? chunk : 1, d.max_abs, d.max_ulp, ms, seen.count};
        if (csv)
            fprintf(csv, "%s,%s,%s,%zu,%zu,%.9g,%.0f,%d,%.6f\n", r->op, IMPL_NAME[impl],
                    hx_dtype_name(a->dt), chunk ? chunk : (size_t)1, L, d.max_abs, d.max_ulp,
                    seen.count, ms);
        if (o->verbose)
            printf("    prefill chunk %-5zu max|diff| %-10.3g distinct %d\n", chunk, d.max_abs,
                   seen.count);
    }
    r->distinct = seen.count;
    rc = 0;
out:
    if (rc && r) s->nser--;
    if (!rc) print_series(r);
    s->done++;
    hx_hashset_free(&seen);
    release(&q); release(&k); release(&v); release(&out);
    free(hq); free(hk); free(hv); free(ref); free(row);
    return rc;
}

static int attention_run(study *s, const options *o, FILE *csv) {
    const int gpu = (s->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    attn_study a = {0};
    a.heads = o->quick && !gpu ? 8 : 32;
    a.kvh = o->quick && !gpu ? 2 : 8;
    a.D = o->quick && !gpu ? 64 : 128;
    a.L = o->attn_ctx ? o->attn_ctx : o->quick ? (gpu ? 4096 : 1500) : 8192;
    size_t bs[MAX_BATCHES], nb = hx_batch_sizes(o->quick ? (gpu ? 64 : 16) : 128, bs, MAX_BATCHES);
    const size_t bmax = bs[nb - 1];
    a.max_pages = (a.L + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    a.pages = a.max_pages + (bmax - 1) * ((OTHER_MAX + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE);
    s->total = s->done = 0;
    for (int d = 0; d < NDTYPES; d++) s->total += 4 * dtype_wanted(o, DTYPES[d]);
    if (csv) fprintf(csv, "op,impl,dtype,seqs_or_chunk,ctx,max_abs_diff,max_ulp_diff,distinct_so_far,ms_per_call\n");
    printf("\nAttention: sequence 0's token at position %zu decoded with 1..%zu sequences in the "
           "step; and computed in a one-shot, chunked or decode prefill (heads %zu / kv %zu, "
           "head_dim %zu, split size %zu keys)\n", a.L - 1, bmax, a.heads, a.kvh, a.D,
           binv_attention_split_size(BINV_DTYPE_F32, a.D));
    print_series_header();
    a.ql = malloc(bmax * sizeof(cl_uint));
    a.cl = malloc(bmax * sizeof(cl_uint));
    a.pt = calloc(bmax * a.max_pages, sizeof(cl_uint));
    int rc = !a.ql || !a.cl || !a.pt ? -1 : 0;
    for (int d = 0; d < NDTYPES && !rc; d++) {
        const binv_dtype dt = DTYPES[d];
        if (!dtype_wanted(o, dt)) continue;
        const size_t es = hx_dtype_size(dt), pool = a.pages * BINV_KV_PAGE_SIZE * a.kvh * a.D;
        a.dt = dt;
        a.k = buffer(s, pool * es, NULL);
        a.v = buffer(s, pool * es, NULL);
        op_case c = {0};
        c.family = "attention";
        snprintf(c.op, sizeof c.op, "decode-batch");
        snprintf(c.shape, sizeof c.shape, "L=%zu h=%zu/%zu d=%zu", a.L, a.heads, a.kvh, a.D);
        c.dt = c.out_dt = dt;
        c.in_cols = c.out_cols = a.heads * a.D;
        c.scale = 1.0f;
        c.call = attn_call;
        c.csv_row = attn_csv_row;
        c.prepare = attn_prepare;
        c.user = &a;
        c.in = buffer(s, bmax * c.in_cols * es, NULL);
        c.out = buffer(s, bmax * c.out_cols * es, NULL);
        if (!a.k || !a.v || !c.in || !c.out) rc = -1;
        if (!rc) rc = sweep(s, o, &c, IMPL_ADAPTIVE, bs, nb, csv);
        if (!rc) rc = sweep(s, o, &c, IMPL_INVARIANT, bs, nb, csv);
        attn_drop_batches(&a);
        /* the prefill sweep uses sequence 0's pages of the decode layout */
        if (!rc) rc = attn_prefill_series(s, o, &a, IMPL_ADAPTIVE, csv);
        if (!rc) rc = attn_prefill_series(s, o, &a, IMPL_INVARIANT, csv);
        release(&c.in);
        release(&c.out);
        release(&a.k);
        release(&a.v);
    }
    free(a.ql); free(a.cl); free(a.pt);
    return rc;
}

static void attention_report(FILE *f, const study *s, const options *o) {
    (void)o;
    fprintf(f, "## Attention: one sequence's token, however the step was batched or sliced\n\n"
               "`decode-batch`: the last prompt token of sequence 0 is decoded in a step with 1..N "
               "sequences (the others of random lengths, different for every N); batch = "
               "sequences in the step. `prefill-chunk`: the same token computed in a one-shot "
               "prefill of the prompt (reference), in chunked prefills (batch = chunk size) and "
               "as a decode step after the rest of the prompt is cached (batch = 1); K/V appended "
               "through `binv_kv_append`, pages from the paged cache.\n\n");
    summary_table(f, s, "attention", "batch");
    fprintf(f, "\n**Source of the variance.** A decode step over a long context has too few "
               "(token, head) pairs to fill a GPU, so attention kernels split the keys across "
               "work-groups and merge the partial softmax states (split-KV, FlashDecoding). A "
               "throughput-tuned scheduler picks the number of splits from the batch and the "
               "device, so the merge tree of a token's keys changes with the other sequences of "
               "the step; libbinv adaptive does that (enough work-groups for 4 per compute unit). "
               "libbinv invariant cuts every context into %zu-key chunks at fixed positions and "
               "merges them left to right in every kernel (fused or split), so a token's bits do "
               "not depend on the step.\n\n**Measured on this device** (%zu compute units), series "
               "that varied: ",
            binv_attention_split_size(BINV_DTYPE_F32, 128), s->cus);
    varying_list(f, s, "attention");
    fprintf(f, ". Invariant series with more than one pattern: %zu of %zu.\n\n",
            count_series(s, "attention", IMPL_INVARIANT, 1),
            count_series(s, "attention", IMPL_INVARIANT, 0));
    fprintf(f, "Max ulp of the token's output against batch 1 / the one-shot prefill "
               "(`=`: bit-identical):\n\n");
    batch_matrix(f, s, "attention", "b", 0);
    fprintf(f, "\nPer point: `attention.csv`. Plots: `attention_maxdiff.png`, "
               "`attention_distinct.png`.\n\n![attention max diff](attention_maxdiff.png)\n"
               "![attention distinct](attention_distinct.png)\n\n");
}

static void attention_plot(FILE *g, const study *s, const options *o) {
    panel p[2];
    const series *first = NULL;
    for (size_t i = 0; i < s->nser && !first; i++)
        if (!strcmp(s->ser[i].family, "attention")) first = &s->ser[i];
    if (!first) return;
    size_t L = 0;
    sscanf(first->shape, "L=%zu", &L);
    p[0].op = "decode-batch";
    p[1].op = "prefill-chunk";
    for (int i = 0; i < 2; i++) {
        p[i].key5 = L;
        snprintf(p[i].shape, sizeof p[i].shape, "%s", first->shape);
    }
    char csv[4200], png[4200];
    snprintf(csv, sizeof csv, "%s/attention.csv", o->out);
    snprintf(png, sizeof png, "%s/attention_maxdiff.png", o->out);
    plot_maxdiff(g, s, "attention", csv, png,
                 "Attention: one token output against its batch-1 / one-shot value",
                 "sequences in the step / prefill chunk size", p, 2, 6);
    snprintf(png, sizeof png, "%s/attention_distinct.png", o->out);
    fprintf(g, "set terminal pngcairo size 1000,520 noenhanced\n");
    plot_distinct(g, s, "attention", png, "Attention: distinct outputs of one token");
}

/* ---- Op families --------------------------------------------------------------
 * Each family measures into the study (run, which writes its CSV), then
 * writes its report section and its plots; main() runs the families in this
 * order and the summary table covers them all.
 *
 * Attention (attention_run): split-KV count from the batch (adaptive) vs
 * fixed 256-key chunks (invariant), over decode batches and prefill chunking. */
typedef struct family {
    const char *id, *title;
    int (*run)(study *s, const options *o, FILE *csv); /* NULL: not measured yet */
    void (*report)(FILE *f, const study *s, const options *o);
    void (*plot)(FILE *gp, const study *s, const options *o);
    const char *pending; /* why run is NULL */
} family;

static const family FAMILIES[] = {
    {"gemm", "GEMM", gemm_run, gemm_report, gemm_plot, NULL},
    {"rows", "Row reductions", rows_run, rows_report, rows_plot, NULL},
    {"attention", "Attention", attention_run, attention_report, attention_plot, NULL},
    {"atomics", "Run-to-run nondeterminism (atomics)", atomics_run, atomics_report, atomics_plot,
     NULL},
};
enum { NFAMILIES = sizeof FAMILIES / sizeof FAMILIES[0] };

static int family_wanted(const options *o, const family *fam) {
    if (!o->only) return 1;
    /* a comma-separated list of ids */
    const char *p = o->only;
    size_t len = strlen(fam->id);
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && !strncmp(p, fam->id, len)) return 1;
        p += l + (e ? 1 : 0);
    }
    return 0;
}

static void write_report(const study *s, const options *o, const int *ran, double seconds) {
    char path[4096];
    snprintf(path, sizeof path, "%s/report.md", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "warning: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    fprintf(f, "# binv-study report\n\nDevice: **%s** (%s), %zu compute units. libbinv-cl %s. "
               "Mode: %s; the run took %.0f s.\n\n",
            s->dev.name, s->dev.platform_name, s->cus, binv_version_string(),
            o->quick ? "`--quick`" : "full", seconds);
    fprintf(f, "Batch variance: the same request computed alone and inside batches of other "
               "requests, for each implementation — `distinct outputs` is the number of bit "
               "patterns the request's output took over the batch sizes (1 = batch-invariant "
               "here). Run-to-run nondeterminism: the same call on the same input repeated.\n\n");
    fprintf(f, "| family | implementation | series | series whose output varied with the batch | "
               "largest ulp diff | all run-to-run deterministic |\n"
               "| --- | --- | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < NFAMILIES; i++) {
        if (!ran[i] || !strcmp(FAMILIES[i].id, "atomics")) continue;
        for (int impl = 0; impl < IMPL_COUNT; impl++) {
            size_t n = 0, var = 0;
            double ulp = 0;
            int det = 1;
            for (size_t j = 0; j < s->nser; j++) {
                const series *r = &s->ser[j];
                if (strcmp(r->family, FAMILIES[i].id) || r->impl != (impl_id)impl) continue;
                n++;
                var += r->distinct > 1;
                if (r->max_ulp > ulp) ulp = r->max_ulp;
                det &= r->deterministic;
            }
            if (n)
                fprintf(f, "| %s | %s | %zu | %s%zu%s | %.0f | %s |\n", FAMILIES[i].title,
                        IMPL_NAME[impl], n, var ? "**" : "", var, var ? "**" : "", ulp,
                        det ? "yes" : "**no**");
        }
    }
    for (int i = 0; i < NFAMILIES; i++)
        if (!strcmp(FAMILIES[i].id, "atomics") && ran[i])
            fprintf(f, "| %s | atomic_cmpxchg / binv_row_sum invariant / adaptive | %d runs each "
                       "| – | – | distinct results: %d / %d / %d |\n",
                    FAMILIES[i].title, s->atom_repeats, s->atom[0].distinct, s->atom[1].distinct,
                    s->atom[2].distinct);
    fprintf(f, "\n");
    for (int i = 0; i < NFAMILIES; i++) {
        if (!FAMILIES[i].run) {
            fprintf(f, "## %s\n\nNot measured: %s.\n\n", FAMILIES[i].title, FAMILIES[i].pending);
            continue;
        }
        if (ran[i]) FAMILIES[i].report(f, s, o);
    }
    /* The end-to-end serving experiment: binv-llm --report FILE writes the
     * section; --llm-report FILE includes it here (docs/llm.md). */
    if (o->llm_report) {
        FILE *l = fopen(o->llm_report, "r");
        if (!l) {
            fprintf(stderr, "warning: cannot read %s: %s\n", o->llm_report, strerror(errno));
        } else {
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, l)) > 0) fwrite(buf, 1, n, f);
            fclose(l);
        }
    } else {
        fprintf(f, "## End to end (binv-llm)\n\nNot included in this run: `binv-llm --report "
                   "FILE` runs the serving experiment and `binv-study --llm-report FILE` includes "
                   "it here (docs/llm.md).\n");
    }
    fclose(f);
}

static void plot(const study *s, const options *o, const int *ran) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("(gnuplot not found: no PNG plots; the CSVs have the data)\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/plot.gp", o->out);
    FILE *g = fopen(path, "w");
    if (!g) return;
    fprintf(g, "# Written by binv-study: gnuplot %s\nset datafile separator ','\nFLOOR = 1e-16\n",
            path);
    for (int i = 0; i < NFAMILIES; i++)
        if (ran[i] && FAMILIES[i].plot) {
            fprintf(g, "set datafile separator ','\n");
            FAMILIES[i].plot(g, s, o);
            fprintf(g, "set datafile separator whitespace\n");
        }
    fclose(g);
    char cmd[8300];
    /* gnuplot's warnings (e.g. an empty y range when nothing varied) are noise here. */
    snprintf(cmd, sizeof cmd, "gnuplot '%s' > '%s/plot.log' 2>&1", path, o->out);
    if (system(cmd) == 0) printf("plots: %s/*.png\n", o->out);
    else printf("warning: gnuplot failed; see %s/plot.log\n", o->out);
}

/* ---- CLBlast, a baseline that may hang ------------------------------------------ */

#ifdef BINV_HAVE_CLBLAST
/* The child's side (--clblast-probe): CLBlast's SGEMM at the smallest and
 * largest batch of each GEMM shape the study runs, checked against a double
 * precision reference.  Exit status 0: CLBlast is usable. */
static int clblast_probe_run(const options *o) {
    hx_device d;
    if (hx_device_open(o->device, &d)) return 2;
    const size_t ns[2] = {o->n, o->router_n}, ms[2] = {1, o->max_batch}, k = o->k;
    int rc = 0;
    for (int si = 0; si < 2 && !rc; si++)
        for (int mi = 0; mi < 2 && !rc && ns[si]; mi++) {
            const size_t m = ms[mi], n = ns[si];
            float *a = malloc(m * k * 4), *w = malloc(n * k * 4), *c = malloc(m * n * 4);
            cl_mem da = NULL, dw = NULL, dc = NULL;
            rc = !a || !w || !c;
            for (size_t i = 0; !rc && i < m * k; i++) a[i] = (float)((i * 7919) % 61) / 61.0f - 0.5f;
            for (size_t i = 0; !rc && i < n * k; i++) w[i] = (float)((i * 104729) % 67) / 67.0f - 0.5f;
            cl_int e = CL_SUCCESS;
            if (!rc) {
                da = clCreateBuffer(d.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, m * k * 4, a, &e);
                dw = clCreateBuffer(d.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, n * k * 4, w, &e);
                dc = clCreateBuffer(d.context, CL_MEM_READ_WRITE, m * n * 4, NULL, &e);
                rc = !da || !dw || !dc;
            }
            if (!rc)
                rc = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m,
                                  n, k, 1.0f, da, 0, k, dw, 0, k, 0.0f, dc, 0, n, &d.queue,
                                  NULL) != CLBlastSuccess;
            if (!rc) rc = clEnqueueReadBuffer(d.queue, dc, CL_TRUE, 0, m * n * 4, c, 0, NULL, NULL);
            /* Row 0 and the last row against the exact sums (f32 accumulation
             * errs by far less than 1e-3 of the magnitude at these k). */
            for (size_t i = 0; !rc && i < m; i += m > 1 ? m - 1 : 1)
                for (size_t j = 0; !rc && j < n; j++) {
                    double t = 0, mag = 0;
                    for (size_t q = 0; q < k; q++) {
                        t += (double)a[i * k + q] * w[j * k + q];
                        mag += fabs((double)a[i * k + q] * w[j * k + q]);
                    }
                    if (!(fabs(c[i * n + j] - t) <= 1e-3 * mag + 1e-30)) {
                        fprintf(stderr, "CLBlast is wrong at m=%zu n=%zu k=%zu: C[%zu][%zu] = %.9g, "
                                        "exact %.9g\n", m, n, k, i, j, c[i * n + j], t);
                        rc = 1;
                    }
                }
            if (da) clReleaseMemObject(da);
            if (dw) clReleaseMemObject(dw);
            if (dc) clReleaseMemObject(dc);
            free(a); free(w); free(c);
        }
    hx_device_close(&d);
    return rc ? 1 : 0;
}

/* Whether CLBlast gives correct results on this device and returns at all:
 * on PoCL 5.0 its SGEMM is wrong, and on PoCL 6.0 with the cbs work-group
 * method it never returns.  A hang inside an OpenCL call cannot be
 * interrupted in-process, so this program runs itself with --clblast-probe
 * (a fresh process with its own OpenCL objects) under a deadline
 * (BINV_CLBLAST_TIMEOUT seconds, default 240). */
static int clblast_usable(const options *o, const char *argv0) {
    char exe[4096];
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) exe[len] = 0;
    else snprintf(exe, sizeof exe, "%s", argv0);
    char n[32], k[32], b[32], r[32];
    snprintf(n, sizeof n, "%zu", o->n);
    snprintf(k, sizeof k, "%zu", o->k);
    snprintf(b, sizeof b, "%zu", o->max_batch);
    snprintf(r, sizeof r, "%zu", o->router_n);
    char *args[16] = {exe, "--clblast-probe", "--n", n, "--k", k, "--max-batch", b,
                      "--router-n", r, NULL};
    if (o->device) {
        args[10] = "--device";
        args[11] = (char *)o->device;
    }
    const char *t = getenv("BINV_CLBLAST_TIMEOUT");
    char why[256];
    if (hx_run_deadline(args, t && atol(t) > 0 ? atol(t) : 240, why, sizeof why) != 0) {
        printf("note: CLBlast's SGEMM failed, is wrong or hangs on this device (probe: %s): no "
               "CLBlast column\n", why);
        return 0;
    }
    return 1;
}
#endif

/* ---- Command line -------------------------------------------------------------- */

/* --help: the usage on stdout, exit status 0; a bad command line: on stderr, 2. */
static int usage_to(FILE *f, int status, const char *argv0) {
    fprintf(f,
            "usage: %s [--device gpu|cpu|P:D] [--list] [--quick] [--out DIR] [--repeats R]\n"
            "          [--only gemm,rows,attention,atomics] [--dtypes f32,f16,bf16] [--verbose]\n"
            "          [--max-batch N] [--n N] [--k K] [--router-n N]    (gemm)\n"
            "          [--max-rows N] [--cols N]                          (rows)\n"
            "          [--attn-ctx L]                                     (attention)\n"
            "          [--llm-report FILE]     include binv-llm's --report section\n"
            "          [--atomic-n N] [--atomic-repeats R]                (atomics)\n"
            "Measures how much the same request's output changes with the batch it is in\n"
            "(GEMM: CLBlast, libbinv adaptive, libbinv invariant; row reductions: libbinv\n"
            "adaptive and invariant), and run-to-run nondeterminism of float atomics against\n"
            "binv_row_sum.  --cols sets every row reduction's width (small test runs);\n"
            "--router-n 0 leaves out the narrow GEMM.\n",
            argv0);
    return status;
}

static int usage(const char *argv0) { return usage_to(stderr, 2, argv0); }

static int parse(int argc, char **argv, options *o) {
    *o = (options){0};
    o->out = "binv-study-report";
    o->repeats = 5;
    o->router_n = 64;
    o->atomic_repeats = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) o->quick = 1;
        else if (!strcmp(a, "--clblast-probe")) o->clblast_probe = 1;
        else if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--device") && v) o->device = argv[++i];
        else if (!strcmp(a, "--out") && v) o->out = argv[++i];
        else if (!strcmp(a, "--only") && v) o->only = argv[++i];
        else if (!strcmp(a, "--dtypes") && v) o->dtypes = argv[++i];
        else if (!strcmp(a, "--repeats") && v) o->repeats = atoi(argv[++i]);
        else if (!strcmp(a, "--max-batch") && v) o->max_batch = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--n") && v) o->n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--k") && v) o->k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--router-n") && v) o->router_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--max-rows") && v) o->max_rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--attn-ctx") && v) o->attn_ctx = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--llm-report") && v) o->llm_report = argv[++i];
        else if (!strcmp(a, "--cols") && v) o->cols = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--atomic-n") && v) o->atomic_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--atomic-repeats") && v) o->atomic_repeats = atoi(argv[++i]);
        else return -1;
    }
    if (o->repeats < 2) o->repeats = 2;
    if (o->atomic_repeats < 2) o->atomic_repeats = 2;
    if (o->atomic_n > 0x7fffffff) return -1;
    for (int i = 0; i < NDTYPES; i++)
        if (o->dtypes && dtype_wanted(o, DTYPES[i])) return 0;
    return o->dtypes ? -1 : 0;
}

int main(int argc, char **argv) {
    options o;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage_to(stdout, 0, argv[0]);
    if (parse(argc, argv, &o)) return usage(argv[0]);
    if (o.list) {
        hx_device_list(stdout);
        return 0;
    }
    const double t0 = hx_now_s();
    study s = {0};
    if (hx_device_open(o.device, &s.dev)) return 1;
    cl_uint cus = 1;
    clGetDeviceInfo(s.dev.device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
    s.cus = cus ? cus : 1;
    s.tty = isatty(fileno(stderr));
    const int gpu = (s.dev.type & CL_DEVICE_TYPE_GPU) != 0;
    if (!o.n) o.n = o.quick ? 512 : 4096;
    if (!o.k) o.k = o.quick ? (gpu ? 4096 : 2048) : 4096;
    if (!o.max_batch) o.max_batch = o.quick ? 64 : 2048;
    if (!o.atomic_n) o.atomic_n = o.quick ? (size_t)1 << 20 : (size_t)1 << 22;
#ifdef BINV_HAVE_CLBLAST
    if (o.clblast_probe) {
        hx_device_close(&s.dev);
        return clblast_probe_run(&o);
    }
    if (family_wanted(&o, &FAMILIES[0])) clblast_ok = clblast_usable(&o, argv[0]);
#endif

    int rc = 1;
    binv_options bo = {sizeof bo, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    binv_status st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.inv);
    bo.schedule = BINV_SCHEDULE_ADAPTIVE;
    if (st == BINV_SUCCESS) st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.adapt);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_context_create: %s\n", binv_status_string(st));
        goto done;
    }
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", o.out, strerror(errno));
        goto done;
    }
    printf("binv-study on %s (%s, %zu compute units)%s\n", s.dev.name, s.dev.platform_name, s.cus,
           o.quick ? " --quick" : "");
    int ran[NFAMILIES] = {0};
    rc = 0;
    for (int i = 0; i < NFAMILIES && !rc; i++) {
        if (!FAMILIES[i].run || !family_wanted(&o, &FAMILIES[i])) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.csv", o.out, FAMILIES[i].id);
        FILE *csv = fopen(path, "w");
        if (!csv) fprintf(stderr, "warning: cannot write %s: %s\n", path, strerror(errno));
        rc = FAMILIES[i].run(&s, &o, csv);
        if (csv) fclose(csv);
        ran[i] = !rc;
    }
    const double seconds = hx_now_s() - t0;
    write_report(&s, &o, ran, seconds);
    plot(&s, &o, ran);
    printf("\nreport: %s/report.md (%.0f s)\n", o.out, seconds);
done:
    for (int m = 0; m < ATOMIC_METHODS; m++) free(s.atom[m].values);
    free(s.ser);
    binv_context_destroy(s.inv);
    binv_context_destroy(s.adapt);
    hx_device_close(&s.dev);
    return rc ? 1 : 0;
}
