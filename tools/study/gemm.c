/* The GEMM family: the same request (row 0 of A) computed alone and as row 0
 * of batches of 2..N rows, by CLBlast, libbinv adaptive and libbinv
 * invariant; and the probe that decides whether CLBlast runs at all. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "study_tool.h"

/* CLBlast: compiled in, passed its probe here, f32 only (the study's baseline). */
static int impl_available(const study *s, impl_id impl, binv_dtype dt) {
    return impl != IMPL_CLBLAST || (hx_have_clblast() && s->clblast_ok && dt == BINV_DTYPE_F32);
}

/* The study's GEMM: C[m, n] = A[m, k] * W[n, k]^T, row-major, packed. */
static hx_gemm gemm_desc(binv_dtype dt, size_t m, size_t n, size_t k) {
    return (hx_gemm){.dt = dt, .ta = BINV_NO_TRANS, .tb = BINV_TRANS, .m = m, .n = n, .k = k,
                     .lda = k, .ldb = k, .ldc = n, .alpha = 1.0f, .beta = 0.0f};
}

/* gemm_desc at batch m by implementation `impl` (CLBlast: f32 only). */
static int gemm_call(study *s, const op_case *c, impl_id impl, size_t m) {
    const hx_gemm g = gemm_desc(c->dt, m, c->n, c->k);
    if (impl == IMPL_CLBLAST) {
        if (c->dt != BINV_DTYPE_F32 || !hx_have_clblast()) return -1;
        const int st = hx_gemm_clblast(&s->dev.queue, &g, c->in, 0, c->w, 0, c->out, 0);
        if (st != 0) {
            fprintf(stderr, "error: CLBlastSgemm: %d\n", st);
            return -1;
        }
        return 0;
    }
    binv_context *ctx = impl == IMPL_ADAPTIVE ? s->adapt : s->inv;
    return binv_failed(ctx, hx_gemm_binv(ctx, s->dev.queue, &g, c->in, 0, c->w, 0, c->out, 0, NULL),
                       "binv_gemm");
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

int gemm_run(study *s, const options *o, FILE *csv) {
    size_t bs[MAX_BATCHES], nb = hx_batch_sizes(o->max_batch, bs, MAX_BATCHES);
    gemm_shape sh[2];
    size_t ns = gemm_shapes(o, sh);
    s->total = s->done = 0;
    for (size_t i = 0; i < ns; i++)
        for (int d = 0; d < NDTYPES; d++)
            for (int impl = 0; impl < IMPL_COUNT; impl++)
                s->total +=
                    dtype_wanted(o, DTYPES[d]) && impl_available(s, (impl_id)impl, DTYPES[d]);
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
            const hx_gemm g = gemm_desc(dt, mmax, n, k);
            unsigned char *hw = malloc(hx_gemm_b_elems(&g) * es);
            if (!hw) return -1;
            fill(dt, hw, hx_gemm_b_elems(&g), 7, 2.0f / sqrtf((float)k), 0.0f);
            c.w = buffer(s, hx_gemm_b_elems(&g) * es, hw);
            free(hw);
            c.in = buffer(s, hx_gemm_a_elems(&g) * es, NULL);
            c.out = buffer(s, hx_gemm_c_elems(&g) * es, NULL);
            if (!c.w || !c.in || !c.out) rc = -1;
            for (int impl = 0; impl < IMPL_COUNT && !rc; impl++)
                if (impl_available(s, (impl_id)impl, dt))
                    rc = sweep(s, o, &c, (impl_id)impl, bs, nb, csv);
            release(&c.w);
            release(&c.in);
            release(&c.out);
        }
    return rc;
}

void gemm_report(FILE *f, const study *s, const options *o) {
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
    section_tail(f, s, "gemm", "m", 0, "Max ulp of row 0 against m = 1",
                 "Per batch size: `gemm.csv`. Plots: `gemm_maxdiff.png` (max |diff| against m), "
                 "`gemm_distinct.png` (distinct outputs per implementation).");
}

void gemm_plot(FILE *g, const study *s, const options *o) {
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

/* ---- CLBlast, a baseline that may hang ------------------------------------------ */

#ifdef BINV_HAVE_CLBLAST
/* CLBlast's SGEMM of gemm_desc(f32, m, n, k) on device d against the exact
 * sums (hx_gemm_ref_row) in row 0 and the last row: f32 accumulation errs by
 * far less than 1e-3 of the terms' magnitude at these k.  0: right. */
static int probe_one(hx_device *d, size_t m, size_t n, size_t k) {
    const hx_gemm g = gemm_desc(BINV_DTYPE_F32, m, n, k);
    float *a = malloc(m * k * 4), *w = malloc(n * k * 4), *c = malloc(m * n * 4);
    double *ref = malloc(n * sizeof *ref), *mag = malloc(n * sizeof *mag);
    cl_mem da = NULL, dw = NULL, dc = NULL;
    int rc = !a || !w || !c || !ref || !mag;
    for (size_t i = 0; !rc && i < m * k; i++) a[i] = (float)((i * 7919) % 61) / 61.0f - 0.5f;
    for (size_t i = 0; !rc && i < n * k; i++) w[i] = (float)((i * 104729) % 67) / 67.0f - 0.5f;
    cl_int e = CL_SUCCESS;
    if (!rc) {
        const cl_mem_flags in = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
        da = clCreateBuffer(d->context, in, m * k * 4, a, &e);
        dw = clCreateBuffer(d->context, in, n * k * 4, w, &e);
        dc = clCreateBuffer(d->context, CL_MEM_READ_WRITE, m * n * 4, NULL, &e);
        rc = !da || !dw || !dc;
    }
    if (!rc) rc = hx_gemm_clblast(&d->queue, &g, da, 0, dw, 0, dc, 0) != 0;
    if (!rc) rc = clEnqueueReadBuffer(d->queue, dc, CL_TRUE, 0, m * n * 4, c, 0, NULL, NULL);
    for (size_t i = 0; !rc && i < m; i += m > 1 ? m - 1 : 1) {
        hx_gemm_ref_row(&g, a, w, NULL, i, ref, mag);
        for (size_t j = 0; !rc && j < n; j++)
            if (!(fabs(c[i * n + j] - ref[j]) <= 1e-3 * mag[j] + 1e-30)) {
                fprintf(stderr, "CLBlast is wrong at m=%zu n=%zu k=%zu: C[%zu][%zu] = %.9g, "
                                "exact %.9g\n", m, n, k, i, j, c[i * n + j], ref[j]);
                rc = 1;
            }
    }
    if (da) clReleaseMemObject(da);
    if (dw) clReleaseMemObject(dw);
    if (dc) clReleaseMemObject(dc);
    free(a), free(w), free(c), free(ref), free(mag);
    return rc;
}

/* The child's side (--clblast-probe): CLBlast's SGEMM at the smallest and
 * largest batch of each GEMM shape the study runs, checked against a double
 * precision reference.  Exit status 0: CLBlast is usable. */
int clblast_probe_run(const options *o) {
    hx_device d;
    if (hx_device_open(o->device, &d)) return 2;
    const size_t ns[2] = {o->n, o->router_n}, ms[2] = {1, o->max_batch};
    int rc = 0;
    for (int si = 0; si < 2 && !rc; si++)
        for (int mi = 0; mi < 2 && !rc && ns[si]; mi++) rc = probe_one(&d, ms[mi], ns[si], o->k);
    hx_device_close(&d);
    return rc ? 1 : 0;
}

/* Whether CLBlast gives correct results on this device and returns at all:
 * on PoCL 5.0 its SGEMM is wrong, and on PoCL 6.0 with the cbs work-group
 * method it never returns.  A hang inside an OpenCL call cannot be
 * interrupted in-process, so this program runs itself with --clblast-probe
 * (a fresh process with its own OpenCL objects) under a deadline
 * (BINV_CLBLAST_TIMEOUT seconds, default 240). */
int clblast_usable(const options *o, const char *argv0) {
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
