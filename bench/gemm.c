/* binv-bench, GEMM: C[m, n] = A[m, k] * W[n, k]^T (the LLM layout) for every
 * (implementation, dtype, m, n, k), next to CLBlast; the call and the
 * reference are the harness's description (harness/op_gemm.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

typedef struct gemm_cfg {
    int impl;
    binv_dtype dt;
    size_t m, n, k;
} gemm_cfg;

static int impl_selected(const bench *b, int impl) {
    switch (impl) {
    case IMPL_CLBLAST: return hx_have_clblast();
    case IMPL_INVARIANT: return b->opt.run_invariant;
    case IMPL_ADAPTIVE: return b->opt.run_adaptive;
    case IMPL_NATIVE: return b->binv[SCHED_NATIVE] != NULL;
    }
    return 0;
}

/* Whether impl can run dtype on this device (an "n/a" cell otherwise). */
static int impl_supports(const bench *b, int impl, binv_dtype dt) {
    if (impl == IMPL_NATIVE) return dt != BINV_DTYPE_F32; /* tensor cores: bf16 / f16 */
    if (impl != IMPL_CLBLAST) return 1;
    if (dt == BINV_DTYPE_F32) return 1;
    if (dt == BINV_DTYPE_F16) return b->has_fp16; /* CLBlast HGEMM computes in half */
    return 0;                                    /* CLBlast has no bf16 */
}

/* The shape of this file: A[m, k] row-major, W[n, k] (BINV_TRANS), C[m, n],
 * alpha 1, beta 0. */
static hx_gemm shape(binv_dtype dt, size_t m, size_t n, size_t k) {
    const hx_gemm g = {dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, k, k, n, 1.0f, 0.0f};
    return g;
}

static int gemm_call(bench *b, const void *cfg, unsigned long slot) {
    const gemm_cfg *c = cfg;
    const hx_gemm g = shape(c->dt, c->m, c->n, c->k);
    cl_mem w = b->w[slot % (unsigned long)b->nw];
    if (c->impl == IMPL_CLBLAST) {
        if (!hx_have_clblast()) return fail("internal: CLBlast is not compiled in");
        const int s = hx_gemm_clblast(&b->queue, &g, b->a, 0, w, 0, b->c, 0);
        if (s != 0)
            return fail("CLBlast%cgemm(m=%zu n=%zu k=%zu) failed: CLBlast status %d",
                        c->dt == BINV_DTYPE_F32 ? 'S' : 'H', g.m, g.n, g.k, s);
        return 0;
    }
    binv_context *ctx = b->binv[c->impl == IMPL_INVARIANT  ? SCHED_INVARIANT
                                : c->impl == IMPL_NATIVE ? SCHED_NATIVE
                                                         : SCHED_ADAPTIVE];
    binv_status st = hx_gemm_binv(ctx, b->queue, &g, b->a, 0, w, 0, b->c, 0, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv_gemm(%s, %s, m=%zu n=%zu k=%zu) failed: %s (%d): %s",
                    impl_names[c->impl], hx_dtype_name(c->dt), g.m, g.n, g.k,
                    binv_status_string(st), st, binv_context_last_error(ctx));
    return 0;
}

/* Max over j of |c_j - ref_j| / mag_j with mag_j = sum_p |a_p w_jp|: the
 * error relative to the size of the terms, meaningful whatever the
 * cancellation.  The row of C read back is in b->crow. */
static double row_error(const bench *b, binv_dtype dt, const double *ref, const double *mag,
                        size_t n) {
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double e = fabs((double)hx_load(dt, b->crow, j) - ref[j]);
        if (isnan(e)) return INFINITY;
        e = mag[j] > 0 ? e / mag[j] : e;
        if (e > worst) worst = e;
    }
    return worst;
}

/* Row `row` of A times W^T in double (exact products, tiny rounding), and
 * the magnitudes sum_p |a_p w_jp|: the harness's reference. */
static void reference_row(const bench *b, binv_dtype dt, size_t row, size_t n, size_t k,
                          double *ref, double *mag) {
    const hx_gemm g = shape(dt, row + 1, n, k);
    hx_gemm_ref_row(&g, b->ha, b->hw, NULL, row, ref, mag);
}

/* Generous bounds that still catch a wrong layout, a lost chunk or garbage:
 * f32 accumulation (binv for every dtype) errs by well under 1e-4 of the
 * term magnitude at these k; storage rounding adds 2^-11 (f16) or 2^-8
 * (bf16); CLBlast HGEMM also accumulates in half. */
static double error_tolerance(int impl, binv_dtype dt) {
    if (dt == BINV_DTYPE_F32) return 1e-3;
    if (impl == IMPL_NATIVE) return 2e-2;
    if (dt == BINV_DTYPE_BF16) return 2e-2;
    return impl == IMPL_CLBLAST ? 5e-2 : 1e-2;
}

static int read_row(bench *b, binv_dtype dt, size_t row, size_t n) {
    size_t esz = hx_dtype_size(dt);
    return read_back(b, b->c, row * n * esz, n * esz, b->crow);
}

void free_shape(bench *b) {
    release_mem(&b->a);
    release_mem(&b->c);
    for (int i = 0; i < b->nw; i++) release_mem(&b->w[i]);
    free(b->w);
    free(b->ha);
    free(b->hw);
    free(b->ref0);
    free(b->reflast);
    free(b->mag0);
    free(b->maglast);
    free(b->crow);
    for (int i = 0; i < IMPL_COUNT; i++) {
        hx_hashset_free(&b->pat[i]);
        b->nmeas[i] = 0;
    }
    b->w = NULL;
    b->nw = 0;
    b->ha = b->hw = NULL;
    b->ref0 = b->reflast = b->mag0 = b->maglast = NULL;
    b->crow = NULL;
}

/* Weight copies: rotate through enough distinct buffers (> 200 MB) that a
 * weight read at small m comes from DRAM, not from the L2 the previous call
 * left it in (H100: 50 MB of L2).  All copies hold the same data. */
static int weight_copies(const bench *b, size_t bytes_a, size_t bytes_w, size_t bytes_c) {
    int copies = b->opt.wcopies;
    if (!copies) {
        copies = 1;
        if (b->is_gpu && !b->opt.quick) copies = (int)((200000000 + bytes_w - 1) / bytes_w) + 1;
        /* Leave room: keep everything under 70% of the device memory. */
        double budget = 0.7 * (double)b->global_mem - (double)bytes_a - (double)bytes_c;
        int fit = budget > 0 ? (int)(budget / (double)bytes_w) : 0;
        if (copies > fit) copies = fit > 1 ? fit : 1;
        if (b->is_gpu && !b->opt.quick && copies * (double)bytes_w < 200e6)
            printf("note: only %d weight copies (%.0f MB) fit: small-m results may be served "
                   "from L2\n", copies, copies * (double)bytes_w * 1e-6);
    }
    return copies;
}

/* Allocates and fills A (max m rows), the weight copies and C for (dtype, n, k). */
static int setup_shape(bench *b, binv_dtype dt, size_t n, size_t k, size_t max_m) {
    size_t esz = hx_dtype_size(dt);
    size_t bytes_a = max_m * k * esz, bytes_w = n * k * esz, bytes_c = max_m * n * esz;
    int rc = 0;
    if (max_m > SIZE_MAX / k / 4 || n > SIZE_MAX / k / 4 || max_m > SIZE_MAX / n / 4)
        return fail("sizes overflow size_t");

    const int copies = weight_copies(b, bytes_a, bytes_w, bytes_c);
    /* Device limits first, before any large host allocation. */
    const char *names[3] = {"A", "W", "C"};
    size_t sizes[3] = {bytes_a, bytes_w, bytes_c};
    for (int i = 0; i < 3; i++)
        if ((cl_ulong)sizes[i] > b->max_alloc)
            return fail("%s (n=%zu k=%zu, max m=%zu) needs %zu bytes, more than "
                        "CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu): use smaller --m / --nk", names[i],
                        n, k, max_m, sizes[i], (unsigned long long)b->max_alloc);
    if ((double)bytes_a + (double)bytes_c + (double)copies * (double)bytes_w >
        0.9 * (double)b->global_mem)
        return fail("A, C and %d weight cop%s (n=%zu k=%zu, max m=%zu) need %.0f MB, more than "
                    "90%% of the device memory (%.0f MB): use smaller --m / --nk%s", copies,
                    copies == 1 ? "y" : "ies", n, k, max_m,
                    ((double)bytes_a + (double)bytes_c + (double)copies * (double)bytes_w) * 1e-6,
                    (double)b->global_mem * 1e-6, b->opt.wcopies ? " / --weight-copies" : "");

    b->ha = malloc(bytes_a);
    b->hw = malloc(bytes_w);
    b->ref0 = malloc(n * sizeof(double));
    b->reflast = malloc(n * sizeof(double));
    b->mag0 = malloc(n * sizeof(double));
    b->maglast = malloc(n * sizeof(double));
    b->crow = malloc(n * esz);
    b->w = calloc((size_t)copies, sizeof *b->w);
    if (!b->ha || !b->hw || !b->ref0 || !b->reflast || !b->mag0 || !b->maglast || !b->crow ||
        !b->w)
        return fail("out of host memory (n=%zu k=%zu, max m=%zu)", n, k, max_m);
    b->nw = copies;

    /* A: row 0 from its own seed (the same bits for every m, dtype and
     * shape's k prefix), rows 1.. from another. */
    uint64_t seed = 0x5eed0000a0ULL ^ ((uint64_t)dt << 56);
    hx_fill_unit(dt, b->ha, k, &seed);
    seed = 0x5eed0001a1ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)k << 20);
    if (max_m > 1) hx_fill_unit(dt, b->ha + k * esz, (max_m - 1) * k, &seed);
    if ((rc = create_buffer(b, bytes_a, b->ha, &b->a, "A"))) return rc;
    seed = 0x5eed0002b2ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)n << 32) ^ k;
    hx_fill_unit(dt, b->hw, n * k, &seed);
    for (int i = 0; i < copies; i++)
        if ((rc = create_buffer(b, bytes_w, b->hw, &b->w[i], "W"))) return rc;
    if ((rc = create_buffer(b, bytes_c, NULL, &b->c, "C"))) return rc;
    reference_row(b, dt, 0, n, k, b->ref0, b->mag0);
    printf("weights: %d cop%s of %.1f MB rotated; operand bytes = esz*(m*k + n*k + m*n): A and W "
           "read once, C written once\n",
           copies, copies == 1 ? "y" : "ies", (double)bytes_w * 1e-6);
    return 0;
}

/* Times and checks one (impl, dtype, m, n, k) into *r; *clblast_ms is
 * CLBlast's time at this m (< 0: none to compare with), *have_last whether
 * the reference of row m-1 is already computed. */
static int measure(bench *b, result *r, double *clblast_ms, int *have_last) {
    const binv_dtype dt = r->dtype;
    const int impl = r->impl;
    const size_t m = r->m, n = r->n, k = r->k, esz = hx_dtype_size(dt);
    /* C starts as NaN for binv (beta = 0 must not read it) and as zeros for
     * CLBlast (whose beta = 0 handling is not ours to test); either way stale
     * results cannot pass the check. */
    const unsigned char nan_byte = 0xff, zero_byte = 0;
    CL_TRY(clEnqueueFillBuffer(b->queue, b->c, impl == IMPL_CLBLAST ? &zero_byte : &nan_byte, 1,
                               0, m * n * esz, 0, NULL, NULL),
           "clEnqueueFillBuffer(C)");
    const gemm_cfg cfg = {impl, dt, m, n, k};
    if (time_calls(b, gemm_call, &cfg, &r->ms, &r->inner, NULL)) return 1;
    r->reps = b->reps;
    r->wcopies = b->nw;
    double s = r->ms * 1e-3;
    r->gflops = 2.0 * (double)m * (double)n * (double)k / s * 1e-9;
    double elems = (double)m * (double)k + (double)n * (double)k + (double)m * (double)n;
    r->gbs = (double)esz * elems / s * 1e-9;
    r->frac = b->copy_gbs > 0 ? r->gbs / b->copy_gbs : 0;
    if (impl == IMPL_CLBLAST) *clblast_ms = r->ms;
    if (*clblast_ms > 0) r->vs_clblast = *clblast_ms / r->ms;
    /* Every call wrote all of C with the same inputs (the weight copies are
     * identical): check rows 0 and m-1 of the last. */
    if (read_row(b, dt, 0, n)) return 1;
    r->row0_hash = hx_hash(b->crow, n * esz);
    record_row0(&b->pat[impl], &b->nmeas[impl], b->crow, n * esz);
    r->err0 = row_error(b, dt, b->ref0, b->mag0, n);
    if (m > 1) {
        if (!*have_last) {
            reference_row(b, dt, m - 1, n, k, b->reflast, b->maglast);
            *have_last = 1;
        }
        if (read_row(b, dt, m - 1, n)) return 1;
        r->errlast = row_error(b, dt, b->reflast, b->maglast, n);
    } else {
        r->errlast = r->err0;
    }
    double tol = error_tolerance(impl, dt);
    r->check_ok = r->err0 <= tol && r->errlast <= tol;
    /* A wrong CLBlast is a broken baseline, not a failure of the library: its
     * row says so and no speed-up is quoted against it. */
    if (!r->check_ok && impl == IMPL_CLBLAST) {
        *clblast_ms = -1;
        r->vs_clblast = -1;
        printf("note: CLBlast's result is wrong on this device (error %.1e): its row is marked "
               "WRONG and is not a baseline\n",
               r->err0 > r->errlast ? r->err0 : r->errlast);
    } else if (!r->check_ok) {
        b->any_bad = 1;
    }
    return 0;
}

static int run_shape(bench *b, binv_dtype dt, size_t n, size_t k) {
    size_t max_m = 0;
    for (int i = 0; i < b->opt.ms.n; i++)
        if (b->opt.ms.v[i] > max_m) max_m = b->opt.ms.v[i];
    printf("\n== %s  n=%zu k=%zu  (invariant K chunk %zu) ==\n", hx_dtype_name(dt), n, k,
           binv_gemm_chunk_size(dt, k));
    if (setup_shape(b, dt, n, k, max_m)) return 1;
    print_table_header();
    for (int mi = 0; mi < b->opt.ms.n; mi++) {
        size_t m = b->opt.ms.v[mi];
        double clblast_ms = -1;
        int have_last = 0;
        for (int impl = 0; impl < IMPL_COUNT; impl++) {
            if (!impl_selected(b, impl)) continue;
            result r;
            memset(&r, 0, sizeof r);
            r.dtype = dt;
            r.m = m;
            r.n = n;
            r.k = k;
            r.impl = impl;
            r.vs_clblast = -1;
            r.available = impl_supports(b, impl, dt);
            if (r.available && measure(b, &r, &clblast_ms, &have_last)) return 1;
            print_row(&r);
            write_csv_row(b, &r);
            if (push((void **)&b->res, &b->nres, &b->capres, &r, sizeof r)) return 1;
        }
    }
    /* Invariance of row 0 across m for this shape. */
    for (int impl = 0; impl < IMPL_COUNT; impl++) {
        if (!impl_selected(b, impl) || !b->nmeas[impl]) continue;
        inv_summary s = {dt, n, k, impl, 0, b->nmeas[impl], b->pat[impl].count};
        if (push((void **)&b->inv, &b->ninv, &b->capinv, &s, sizeof s)) return 1;
    }
    free_shape(b);
    return 0;
}

int run_gemm(bench *b) {
    const char *vs_note = hx_have_clblast() ? " vs-clbl = CLBlast time / this time;" : "";
    printf("\nGEMM: layout A[m,k] x W[n,k]^T = C[m,n], alpha=1, beta=0\n");
    printf("columns: calls = calls timed; GB/s = operand bytes / time; %%BW = that / copy "
           "bandwidth;%s err = max |C - ref| / sum|a*w| over rows 0 and m-1\n", vs_note);
    if (open_csv(&b->csv, b->opt.csv,
                 "device,dtype,impl,m,n,k,status,reps,calls_per_rep,weight_copies,ms,"
                 "gflops,operand_gbs,copy_gbs,frac_copy_bw,vs_clblast,err_row0,"
                 "err_row_last,check,row0_fnv1a64\n"))
        return 1;
    /* The plot directory is made now so that a bad name fails before the run. */
    if (b->opt.plot_dir && mkdir(b->opt.plot_dir, 0777) != 0 && errno != EEXIST)
        return fail("cannot create plot directory '%s': %s", b->opt.plot_dir, strerror(errno));
    for (int d = 0; d < b->opt.ndtypes; d++)
        for (int s = 0; s < b->opt.nnk; s++)
            if (run_shape(b, b->opt.dtypes[d], b->opt.ns[s], b->opt.ks[s])) return 1;
    print_invariance_summary(b);
    if (close_csv(&b->csv, b->opt.csv)) return 1;
    return b->opt.plot_dir ? write_plots(b) : 0;
}
