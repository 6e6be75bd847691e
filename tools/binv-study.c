/* binv-study: measures batch variance and invariance on an OpenCL device.
 *
 * The same request — one row of activations — is computed alone (batch of 1)
 * and as row 0 of batches of 2..N rows whose other rows hold other requests.
 * For each implementation (CLBlast, libbinv adaptive, libbinv invariant) and
 * storage dtype it reports how far row 0 moves from its batch-of-1 value (max
 * |diff|, max ulp), how many distinct bit patterns row 0 takes, whether
 * repeated calls are deterministic, and the time per call.  Writes a report
 * folder: report.md, CSV and (with gnuplot) PNG plots. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "study.h"
#ifdef BINV_HAVE_CLBLAST
#include <clblast_c.h>
#endif

typedef enum { IMPL_CLBLAST, IMPL_ADAPTIVE, IMPL_INVARIANT, IMPL_COUNT } impl_id;
static const char *IMPL_NAME[] = {"clblast", "binv-adaptive", "binv-invariant"};

typedef struct options {
    const char *device, *out;
    int quick, repeats, list;
    size_t n, k, max_batch;
} options;

typedef struct row_result {
    impl_id impl;
    binv_dtype dtype;
    size_t m;
    double max_abs, max_ulp, ms;
    int distinct_so_far;
} row_result;

/* Activations and weights of LLM-like scale: uniform in (-1, 1) scaled, then
 * stored in the dtype (round to nearest even). */
static void fill(binv_dtype dt, void *dst, size_t count, uint64_t seed, float scale) {
    uint64_t s = seed;
    for (size_t i = 0; i < count; i++) {
        float v = ((float)(study_rng_next(&s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
        study_store(dt, dst, i, v);
    }
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--device gpu|cpu|P:D] [--list] [--quick] [--out DIR] [--repeats R]\n"
            "          [--max-batch N] [--n N] [--k K]\n"
            "Measures how much the same request's output changes with the batch it is in,\n"
            "for CLBlast, libbinv (adaptive schedule) and libbinv (invariant schedule).\n",
            argv0);
    return 2;
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){NULL, "binv-study-report", 0, 5, 0, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) o->quick = 1;
        else if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--device") && v) o->device = argv[++i];
        else if (!strcmp(a, "--out") && v) o->out = argv[++i];
        else if (!strcmp(a, "--repeats") && v) o->repeats = atoi(argv[++i]);
        else if (!strcmp(a, "--max-batch") && v) o->max_batch = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--n") && v) o->n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--k") && v) o->k = strtoull(argv[++i], NULL, 10);
        else return -1;
    }
    if (o->repeats < 2) o->repeats = 2;
    return 0;
}

typedef struct study {
    cli_device dev;
    binv_context *inv, *adapt;
    int have_fp16;
    FILE *csv;
    row_result *rows;
    size_t nrows, cap;
} study;

/* One GEMM call C[m,n] = A[m,k] * W[n,k]^T by implementation `impl`. */
static int run_impl(study *s, impl_id impl, binv_dtype dt, size_t m, size_t n, size_t k, cl_mem a,
                    cl_mem w, cl_mem c) {
    if (impl == IMPL_CLBLAST) {
#ifdef BINV_HAVE_CLBLAST
        CLBlastStatusCode st;
        if (dt == BINV_DTYPE_F32)
            st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n,
                              k, 1.0f, a, 0, k, w, 0, k, 0.0f, c, 0, n, &s->dev.queue, NULL);
        else
            return -1;
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
    binv_status st = binv_gemm(ctx, s->dev.queue, dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f, a,
                               0, k, w, 0, k, 0.0f, c, 0, n, 0, NULL, NULL);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_gemm: %s: %s\n", binv_status_string(st),
                binv_context_last_error(ctx));
        return -1;
    }
    return 0;
}

static int impl_available(const study *s, impl_id impl, binv_dtype dt) {
    (void)s;
    if (impl != IMPL_CLBLAST) return 1;
#ifdef BINV_HAVE_CLBLAST
    return dt == BINV_DTYPE_F32;
#else
    return 0;
#endif
}

static void add_row(study *s, row_result r) {
    if (s->nrows == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        row_result *n = realloc(s->rows, s->cap * sizeof *n);
        if (!n) return;
        s->rows = n;
    }
    s->rows[s->nrows++] = r;
}

typedef struct summary {
    impl_id impl;
    binv_dtype dtype;
    int distinct;
    double max_abs, max_ulp;
    int deterministic;
} summary;

/* Sweeps batch sizes for one implementation and dtype. */
static int sweep(study *s, const options *o, impl_id impl, binv_dtype dt, const size_t *ms,
                 size_t nm, summary *sum) {
    const size_t n = o->n, k = o->k, es = study_dtype_size(dt);
    const size_t mmax = ms[nm - 1];
    unsigned char *ha = malloc(mmax * k * es), *hw = malloc(n * k * es);
    unsigned char *row0 = malloc(n * es), *ref = malloc(n * es);
    unsigned char *full = malloc(mmax * n * es), *again = malloc(mmax * n * es);
    study_hashset seen = {0};
    int rc = -1;
    cl_int err;
    if (!ha || !hw || !row0 || !ref || !full || !again) goto out;
    fill(dt, hw, n * k, 7, 1.0f / sqrtf((float)k) * 2.0f);
    cl_mem w = clCreateBuffer(s->dev.context, CL_MEM_COPY_HOST_PTR | CL_MEM_READ_ONLY, n * k * es, hw, &err);
    cl_mem a = clCreateBuffer(s->dev.context, CL_MEM_READ_ONLY, mmax * k * es, NULL, &err);
    cl_mem c = clCreateBuffer(s->dev.context, CL_MEM_READ_WRITE, mmax * n * es, NULL, &err);
    if (!w || !a || !c) {
        fprintf(stderr, "error: out of device memory\n");
        goto release;
    }
    *sum = (summary){impl, dt, 0, 0, 0, 1};
    for (size_t mi = 0; mi < nm; mi++) {
        size_t m = ms[mi];
        /* Row 0 is the request under study; rows 1.. are other requests. */
        fill(dt, ha, k, 1, 1.0f);
        fill(dt, ha + k * es, (m - 1) * k, 1000 + m, 1.0f);
        clEnqueueWriteBuffer(s->dev.queue, a, CL_TRUE, 0, m * k * es, ha, 0, NULL, NULL);
        if (run_impl(s, impl, dt, m, n, k, a, w, c)) goto release; /* warm-up (compiles) */
        clFinish(s->dev.queue);
        int reps = o->quick ? 2 : 5;
        double t0 = study_now_s();
        for (int r = 0; r < reps; r++)
            if (run_impl(s, impl, dt, m, n, k, a, w, c)) goto release;
        clFinish(s->dev.queue);
        double ms_per = (study_now_s() - t0) / reps * 1e3;
        clEnqueueReadBuffer(s->dev.queue, c, CL_TRUE, 0, n * es, row0, 0, NULL, NULL);
        if (mi == 0) memcpy(ref, row0, n * es);
        study_diff d = study_compare(dt, ref, row0, n);
        study_hashset_add(&seen, row0, n * es);
        if (d.max_abs > sum->max_abs) sum->max_abs = d.max_abs;
        if (d.max_ulp > sum->max_ulp) sum->max_ulp = d.max_ulp;
        row_result rr = {impl, dt, m, d.max_abs, d.max_ulp, ms_per, seen.count};
        add_row(s, rr);
        printf("  %-15s %-5s m=%-5zu max|diff| %-10.3g max ulp %-8.0f distinct %-3d %9.3f ms\n",
               IMPL_NAME[impl], study_dtype_name(dt), m, d.max_abs, d.max_ulp, seen.count, ms_per);
        fflush(stdout);
        if (s->csv)
            fprintf(s->csv, "gemm,%s,%s,%zu,%zu,%zu,%.9g,%.0f,%d,%.6f\n", IMPL_NAME[impl],
                    study_dtype_name(dt), m, n, k, d.max_abs, d.max_ulp, seen.count, ms_per);
        /* Run-to-run: the largest batch, computed repeatedly, is bitwise stable. */
        if (mi == nm - 1) {
            clEnqueueReadBuffer(s->dev.queue, c, CL_TRUE, 0, m * n * es, full, 0, NULL, NULL);
            for (int r = 0; r < o->repeats; r++) {
                if (run_impl(s, impl, dt, m, n, k, a, w, c)) goto release;
                clEnqueueReadBuffer(s->dev.queue, c, CL_TRUE, 0, m * n * es, again, 0, NULL, NULL);
                if (memcmp(full, again, m * n * es)) sum->deterministic = 0;
            }
        }
    }
    sum->distinct = seen.count;
    rc = 0;
release:
    if (w) clReleaseMemObject(w);
    if (a) clReleaseMemObject(a);
    if (c) clReleaseMemObject(c);
out:
    study_hashset_free(&seen);
    free(ha); free(hw); free(row0); free(ref); free(full); free(again);
    return rc;
}

static void write_report(const study *s, const options *o, const summary *sums, size_t nsum) {
    char path[4096];
    snprintf(path, sizeof path, "%s/report.md", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "warning: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    fprintf(f, "# binv-study report\n\nDevice: **%s** (%s). libbinv-cl %s.\n\n", s->dev.name,
            s->dev.platform_name, binv_version_string());
    fprintf(f, "## GEMM: one request alone vs inside a batch\n\n"
               "C[m, n] = A[m, k] · W[n, k]ᵀ with n = %zu, k = %zu. Row 0 of A is the same request "
               "in every batch; rows 1..m-1 are other requests. For each implementation the table "
               "gives how far row 0 of C moved from its batch-of-1 value over all batch sizes, how "
               "many distinct bit patterns it took, and whether %d repeated calls at the largest "
               "batch gave identical bits.\n\n",
            o->n, o->k, o->repeats);
    fprintf(f, "| implementation | dtype | distinct outputs | max abs diff | max ulp diff | run-to-run deterministic |\n"
               "| --- | --- | ---: | ---: | ---: | --- |\n");
    for (size_t i = 0; i < nsum; i++)
        fprintf(f, "| %s | %s | %d | %.3g | %.0f | %s |\n", IMPL_NAME[sums[i].impl],
                study_dtype_name(sums[i].dtype), sums[i].distinct, sums[i].max_abs,
                sums[i].max_ulp, sums[i].deterministic ? "yes" : "**no**");
    fprintf(f, "\n### Where the variance comes from\n\n"
               "- **CLBlast** and **libbinv adaptive** choose how to split the K reduction from "
               "the shape (and the device's compute units): when m is small the output tiles "
               "cannot fill the device, so K is split into more pieces; the pieces are summed "
               "in a different grouping and the rounding changes with m.\n"
               "- **libbinv invariant** cuts K at fixed 512-element boundaries whatever m is and "
               "combines the pieces in a fixed order (docs/schedules.md): small batches still "
               "split K for speed, but along the same boundaries, so the bits cannot change.\n"
               "- If an adaptive row shows 1 distinct output, its schedule happened not to change "
               "over these batch sizes on this device; that is measured, not assumed.\n\n");
    fprintf(f, "Per batch size: `gemm.csv`. Plots: `gemm_maxdiff.png`, `gemm_distinct.png` "
               "(when gnuplot is installed).\n\n");
    fprintf(f, "| implementation | dtype | m | max abs diff | max ulp | distinct so far | ms/call |\n"
               "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t i = 0; i < s->nrows; i++) {
        const row_result *r = &s->rows[i];
        fprintf(f, "| %s | %s | %zu | %.3g | %.0f | %d | %.3f |\n", IMPL_NAME[r->impl],
                study_dtype_name(r->dtype), r->m, r->max_abs, r->max_ulp, r->distinct_so_far,
                r->ms);
    }
    fclose(f);
}

static void plot(const options *o) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("(gnuplot not found: no PNG plots; the CSV has the data)\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/plot.gp", o->out);
    FILE *f = fopen(path, "w");
    if (!f) return;
    /* One line per implementation and dtype; CSV columns: 2 impl, 3 dtype,
     * 4 m, 7 max abs diff, 9 distinct so far. */
    fprintf(f,
            "set datafile separator ','\n"
            "set terminal pngcairo size 900,560 noenhanced\n"
            "set logscale x 2\nset key outside right\nset grid\n"
            "impls = 'clblast binv-adaptive binv-invariant'\n"
            "dts = 'f32 f16 bf16'\n"
            "set output '%s/gemm_maxdiff.png'\n"
            "set title 'Row 0 of C vs its batch-of-1 value (max |diff|; 0 drawn at 1e-12)'\n"
            "set xlabel 'batch size m'\nset ylabel 'max |diff|'\nset logscale y\n"
            "plot for [i in impls] for [d in dts] '%s/gemm.csv' using "
            "(strcol(2) eq i && strcol(3) eq d ? $4 : 1/0):($7 > 0 ? $7 : 1e-12) "
            "with linespoints title i.' '.d\n"
            "unset logscale y\n"
            "set output '%s/gemm_distinct.png'\n"
            "set title 'Distinct bit patterns of the same request, batches 1..m'\n"
            "set ylabel 'distinct outputs'\n"
            "plot for [i in impls] for [d in dts] '%s/gemm.csv' using "
            "(strcol(2) eq i && strcol(3) eq d ? $4 : 1/0):9 with linespoints title i.' '.d\n",
            o->out, o->out, o->out, o->out);
    fclose(f);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", path);
    if (system(cmd) == 0) printf("plots: %s/gemm_maxdiff.png, %s/gemm_distinct.png\n", o->out, o->out);
}

int main(int argc, char **argv) {
    options o;
    if (parse(argc, argv, &o)) return usage(argv[0]);
    if (o.list) {
        cli_device_list(stdout);
        return 0;
    }
    study s = {0};
    if (cli_device_open(o.device, &s.dev)) return 1;
    int gpu = (s.dev.type & CL_DEVICE_TYPE_GPU) != 0;
    if (!o.n) o.n = o.quick ? 512 : 4096;
    if (!o.k) o.k = o.quick ? (gpu ? 4096 : 2048) : 4096;
    if (!o.max_batch) o.max_batch = o.quick ? 64 : 2048;
    size_t ms[32], nm = 0;
    for (size_t m = 1; m <= o.max_batch && nm < 32; m = m < 4 ? m + 1 : m * 2) ms[nm++] = m;

    binv_options bo = {sizeof bo, BINV_SCHEDULE_INVARIANT, NULL};
    binv_status st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.inv);
    bo.schedule = BINV_SCHEDULE_ADAPTIVE;
    if (st == BINV_SUCCESS) st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.adapt);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_context_create: %s\n", binv_status_string(st));
        return 1;
    }
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/gemm.csv", o.out);
    s.csv = fopen(path, "w");
    if (s.csv)
        fprintf(s.csv, "op,impl,dtype,m,n,k,max_abs_diff,max_ulp_diff,distinct_so_far,ms_per_call\n");
    printf("binv-study on %s (%s)%s\nGEMM n=%zu k=%zu, batches 1..%zu\n", s.dev.name,
           s.dev.platform_name, o.quick ? " --quick" : "", o.n, o.k, o.max_batch);

    summary sums[16];
    size_t nsum = 0;
    const binv_dtype dts[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
    int rc = 0;
    for (int d = 0; d < 3 && !rc; d++)
        for (int impl = 0; impl < IMPL_COUNT && !rc; impl++) {
            if (!impl_available(&s, (impl_id)impl, dts[d])) continue;
            rc = sweep(&s, &o, (impl_id)impl, dts[d], ms, nm, &sums[nsum]);
            if (!rc) nsum++;
        }
    if (s.csv) fclose(s.csv);

    printf("\n%-15s %-5s %9s %12s %9s %s\n", "implementation", "dtype", "distinct", "max|diff|",
           "max ulp", "deterministic");
    for (size_t i = 0; i < nsum; i++)
        printf("%-15s %-5s %9d %12.3g %9.0f %s\n", IMPL_NAME[sums[i].impl],
               study_dtype_name(sums[i].dtype), sums[i].distinct, sums[i].max_abs,
               sums[i].max_ulp, sums[i].deterministic ? "yes" : "NO");
    write_report(&s, &o, sums, nsum);
    plot(&o);
    printf("report: %s/report.md\n", o.out);
    free(s.rows);
    binv_context_destroy(s.inv);
    binv_context_destroy(s.adapt);
    cli_device_close(&s.dev);
    return rc ? 1 : 0;
}
