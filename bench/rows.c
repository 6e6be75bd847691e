/* binv-bench, row reductions: rmsnorm, softmax, log_softmax, layernorm,
 * add_rmsnorm, row_sum, row_mean, selected_log_softmax for every (dtype,
 * cols, op, rows, schedule);
 * the call, the traffic and the reference are the harness's description
 * (harness/op_rows.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Rotation: on a GPU (not --quick) each pool holds >= this many bytes, so
 * that consecutive calls on small shapes touch >= 2 x this much of x and y
 * and read from DRAM, not from the L2 the previous call left them in. */
#define ROWS_ROTATE_BYTES ((size_t)128 << 20)
/* Rows of host data; the pools repeat them (row i holds host row i % this). */
#define ROWS_HOST_ROWS 64

typedef struct rows_cfg {
    int op, sched;
    binv_dtype dt;
    size_t rows, cols, slots;
} rows_cfg;

static size_t rows_row_bytes(binv_dtype dt, size_t cols) { return cols * hx_dtype_size(dt); }

/* Whether a shape fits: its buffers within 25% of the device memory, each
 * matrix within CL_DEVICE_MAX_MEM_ALLOC_SIZE. */
static int rows_fits(const bench *b, int op, binv_dtype dt, size_t rows, size_t cols) {
    const hx_rows_info *o = &hx_rows_ops[op];
    double mat = (double)rows * (double)rows_row_bytes(dt, cols);
    double total = o->buffers * mat + o->vectors * (double)rows_row_bytes(dt, cols) +
                   (hx_rows_ops[op].f32_out ? 4.0 * (double)rows : 0.0);
    return total <= 0.25 * (double)b->global_mem && mat <= (double)b->max_alloc;
}

void free_rows_shape(bench *b) {
    cl_mem *bufs[] = {&b->px, &b->pr, &b->py, &b->pout, &b->pw, &b->pb, &b->pids};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) release_mem(bufs[i]);
    unsigned char **host[] = {&b->hx, &b->hr, &b->hvw, &b->hvb, &b->yrow};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) {
        free(*host[i]);
        *host[i] = NULL;
    }
    free(b->rv);
    free(b->rref);
    free(b->hids);
    b->rv = b->rref = NULL;
    b->hids = NULL;
    b->pool_rows = b->rpool_rows = b->vslots = b->hrows = 0;
}

/* Fills the first `rows` rows of a pool with the host rows repeated: writes
 * them once, then doubles the filled part with device copies. */
static int fill_pool(bench *b, cl_mem pool, const unsigned char *host, size_t host_rows,
                     size_t row_bytes, size_t rows) {
    size_t done = host_rows < rows ? host_rows : rows;
    CL_TRY(clEnqueueWriteBuffer(b->queue, pool, CL_TRUE, 0, done * row_bytes, host, 0, NULL, NULL),
           "clEnqueueWriteBuffer(rows pool)");
    while (done < rows) {
        size_t n = done < rows - done ? done : rows - done;
        CL_TRY(clEnqueueCopyBuffer(b->queue, pool, pool, 0, done * row_bytes, n * row_bytes, 0,
                                   NULL, NULL),
               "clEnqueueCopyBuffer(rows pool)");
        done += n;
    }
    CL_TRY(clFinish(b->queue), "clFinish");
    return 0;
}

/* Allocates and fills the pools for (dtype, cols).  Returns 0 also when no
 * shape fits (then pool_rows is 0). */
static int setup_rows_shape(bench *b, binv_dtype dt, size_t cols) {
    const size_t rb = rows_row_bytes(dt, cols);
    size_t fit = 0, rfit = 0;
    int need_r = 0, need_y = 0, need_out = 0, need_w = 0, need_b = 0, need_ids = 0;
    for (int i = 0; i < b->opt.nrops; i++) {
        int op = b->opt.rops[i];
        for (int j = 0; j < b->opt.rows.n; j++) {
            size_t r = b->opt.rows.v[j];
            if (!rows_fits(b, op, dt, r, cols)) continue;
            if (r > fit) fit = r;
            if (op == HX_ADD_RMSNORM && r > rfit) rfit = r;
        }
        need_r |= op == HX_ADD_RMSNORM;
        need_y |= !hx_rows_ops[op].f32_out;
        need_out |= hx_rows_ops[op].f32_out;
        need_w |= hx_rows_ops[op].vectors > 0;
        need_b |= op == HX_LAYERNORM;
        need_ids |= hx_rows_selects(op);
    }
    if (!fit) return 0;
    size_t rot = 1;
    if (b->is_gpu && !b->opt.quick) {
        rot = (ROWS_ROTATE_BYTES + rb - 1) / rb;
        /* Rotation may not push the pools past the limits either. */
        size_t cap = (size_t)(b->max_alloc / rb);
        size_t mem_cap = (size_t)(0.25 * (double)b->global_mem / (3.0 * (double)rb));
        if (cap > mem_cap) cap = mem_cap;
        if (rot > cap) rot = cap;
    }
    b->pool_rows = fit > rot ? fit : rot;
    b->rpool_rows = need_r ? (rfit > rot ? rfit : rot) : 0;
    b->vslots = rot < b->pool_rows ? rot : b->pool_rows;
    b->hrows = b->pool_rows < ROWS_HOST_ROWS ? b->pool_rows : ROWS_HOST_ROWS;

    b->hx = malloc(b->hrows * rb);
    b->hr = need_r ? malloc(b->hrows * rb) : NULL;
    b->hvw = malloc(rb);
    b->hvb = malloc(rb);
    b->yrow = malloc(rb > 4 ? rb : 4);
    b->rv = malloc(cols * sizeof(double));
    b->rref = malloc(cols * sizeof(double));
    b->hids = need_ids ? malloc(b->hrows * sizeof *b->hids) : NULL;
    if (!b->hx || (need_r && !b->hr) || !b->hvw || !b->hvb || !b->yrow || !b->rv || !b->rref ||
        (need_ids && !b->hids))
        return fail("out of host memory (rows, cols=%zu)", cols);
    /* x: row 0 from its own seed (the same bits for every rows), rows 1..
     * from another; the residual, weight/gamma and beta from their own. */
    uint64_t seed = 0x5eed0010c0ULL ^ ((uint64_t)dt << 56);
    hx_fill_unit(dt, b->hx, cols, &seed);
    seed = 0x5eed0011c1ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    hx_fill_unit(dt, b->hx + rb, (b->hrows - 1) * cols, &seed);
    if (need_r) {
        seed = 0x5eed0012c2ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
        hx_fill_unit(dt, b->hr, b->hrows * cols, &seed);
    }
    seed = 0x5eed0013c3ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    hx_fill_unit(dt, b->hvw, cols, &seed);
    seed = 0x5eed0014c4ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    hx_fill_unit(dt, b->hvb, cols, &seed);
    if (need_ids) { /* ids anywhere in the row; row 0's the same for every rows */
        seed = 0x5eed0015c5ULL ^ ((uint64_t)cols << 20);
        for (size_t i = 0; i < b->hrows; i++) b->hids[i] = (cl_uint)(hx_rng_next(&seed) % cols);
    }

    if (create_buffer(b, b->pool_rows * rb, NULL, &b->px, "x pool") ||
        fill_pool(b, b->px, b->hx, b->hrows, rb, b->pool_rows))
        return 1;
    if (need_r && (create_buffer(b, b->rpool_rows * rb, NULL, &b->pr, "residual pool") ||
                   fill_pool(b, b->pr, b->hr, b->hrows, rb, b->rpool_rows)))
        return 1;
    if (need_w && (create_buffer(b, b->vslots * rb, NULL, &b->pw, "weight pool") ||
                   fill_pool(b, b->pw, b->hvw, 1, rb, b->vslots)))
        return 1;
    if (need_b && (create_buffer(b, b->vslots * rb, NULL, &b->pb, "beta pool") ||
                   fill_pool(b, b->pb, b->hvb, 1, rb, b->vslots)))
        return 1;
    if (need_ids &&
        (create_buffer(b, b->pool_rows * sizeof *b->hids, NULL, &b->pids, "ids pool") ||
         fill_pool(b, b->pids, (const unsigned char *)b->hids, b->hrows, sizeof *b->hids,
                   b->pool_rows)))
        return 1;
    /* Outputs: written once here so that no first touch is timed. */
    if (need_y && (create_buffer(b, b->pool_rows * rb, NULL, &b->py, "y pool") ||
                   fill_nan(b, b->py, 0, b->pool_rows * rb)))
        return 1;
    if (need_out && (create_buffer(b, b->pool_rows * 4, NULL, &b->pout, "out pool") ||
                     fill_nan(b, b->pout, 0, b->pool_rows * 4)))
        return 1;
    CL_TRY(clFinish(b->queue), "clFinish");
    printf("pools: %zu rows of x and y (%.1f MB each)%s, %zu cop%s of the vectors; the inputs "
           "of a call on r rows are copy s of floor(%zu/r), rotated\n",
           b->pool_rows, (double)(b->pool_rows * rb) * 1e-6,
           need_r ? ", residual likewise" : "", b->vslots, b->vslots == 1 ? "y" : "ies",
           b->pool_rows);
    return 0;
}

static int rows_call(bench *b, const void *cfg, unsigned long slot) {
    const rows_cfg *c = cfg;
    const size_t s = slot % c->slots, n = c->cols;
    const size_t mo = s * c->rows * n, vo = (s % b->vslots) * n;
    const int f32_out = hx_rows_ops[c->op].f32_out;
    const hx_rows p = {c->op, c->dt, c->rows, n, ROWS_EPS, b->px, mo, n, b->pr, mo, n, b->pw, vo,
                       b->pb, vo, f32_out ? b->pout : b->py, f32_out ? s * c->rows : mo, n,
                       b->pids, s * c->rows};
    binv_context *ctx = b->binv[c->sched];
    binv_status st = hx_rows_binv(ctx, b->queue, &p, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv %s(%s, %s, rows=%zu cols=%zu) failed: %s (%d): %s",
                    hx_rows_ops[c->op].name, sched_names[c->sched], hx_dtype_name(c->dt),
                    c->rows, n, binv_status_string(st), st, binv_context_last_error(ctx));
    return 0;
}

/* Reference output of pool row `row` (the harness's, into b->rref) and the
 * scale the error is measured against. */
static double rows_reference(bench *b, int op, binv_dtype dt, size_t row, size_t cols) {
    const size_t rb = rows_row_bytes(dt, cols), hr = row % b->hrows;
    return hx_rows_ref(op, dt, cols, (double)ROWS_EPS, b->hx + hr * rb,
                       b->hr ? b->hr + hr * rb : NULL, b->hvw, b->hvb, b->rref, b->rv);
}

/* Max |output - reference| / scale for pool row `row`, whose output is in
 * b->yrow (selected_log_softmax: the reference's element at the row's id). */
static double rows_error(bench *b, int op, binv_dtype dt, size_t row, size_t cols) {
    double scale = rows_reference(b, op, dt, row, cols), worst = 0;
    size_t n = hx_rows_ops[op].f32_out ? 1 : cols;
    const size_t at = hx_rows_selects(op) ? b->hids[row % b->hrows] : 0;
    for (size_t j = 0; j < n; j++) {
        double got = hx_rows_ops[op].f32_out ? hx_load(BINV_DTYPE_F32, b->yrow, 0)
                                     : hx_load(dt, b->yrow, j);
        double e = fabs(got - b->rref[at + j]);
        if (isnan(e)) return INFINITY;
        if (e > worst) worst = e;
    }
    return scale > 0 ? worst / scale : worst;
}

/* f32 accumulation and the library's exp/log/rsqrt err by far less; the
 * output's rounding to the dtype is 2^-24, 2^-11 or 2^-8 of it. */
static double rows_tolerance(binv_dtype dt) {
    return dt == BINV_DTYPE_F32 ? 1e-4 : dt == BINV_DTYPE_F16 ? 2e-3 : 1.6e-2;
}

/* Reads row `row` of slot 0's output into b->yrow. */
static int rows_read(bench *b, const rows_cfg *c, size_t row) {
    if (hx_rows_ops[c->op].f32_out) return read_back(b, b->pout, row * 4, 4, b->yrow);
    const size_t rb = rows_row_bytes(c->dt, c->cols);
    return read_back(b, b->py, row * rb, rb, b->yrow);
}

/* The checked call: slot 0, with x as filled (add_rmsnorm updates x in
 * place: it is restored before and after) and the outputs set to NaN first. */
static int rows_check(bench *b, const rows_cfg *c, double *err0, double *errlast,
                      uint64_t *hash0) {
    const size_t rb = rows_row_bytes(c->dt, c->cols);
    const int add = c->op == HX_ADD_RMSNORM;
    if (add && fill_pool(b, b->px, b->hx, b->hrows, rb, b->rpool_rows)) return 1;
    if (hx_rows_ops[c->op].f32_out ? fill_nan(b, b->pout, 0, c->rows * 4)
                           : fill_nan(b, b->py, 0, c->rows * rb))
        return 1;
    if (rows_call(b, c, 0)) return 1;
    if (rows_read(b, c, 0)) return 1;
    size_t bytes0 = hx_rows_ops[c->op].f32_out ? 4 : rb;
    *hash0 = hx_hash(b->yrow, bytes0);
    record_row0(&b->rpat[c->sched], &b->rmeas[c->sched], b->yrow, bytes0);
    *err0 = rows_error(b, c->op, c->dt, 0, c->cols);
    *errlast = *err0;
    if (c->rows > 1) {
        if (rows_read(b, c, c->rows - 1)) return 1;
        *errlast = rows_error(b, c->op, c->dt, c->rows - 1, c->cols);
    }
    if (add && fill_pool(b, b->px, b->hx, b->hrows, rb, b->rpool_rows)) return 1;
    return 0;
}

static void rows_print_header(void) {
    printf("%-11s %-5s %6s %7s %-9s %6s %6s %10s %8s %8s %6s %9s %8s %5s\n", "op", "dtype",
           "rows", "cols", "schedule", "copies", "calls", "us/call", "host-us", "GB/s", "%BW",
           "adapt/inv", "err", "check");
}

static void rows_csv_fields(bench *b, const rows_cfg *c, const char *status) {
    csv_string(b->rows_csv, b->dev.name);
    fprintf(b->rows_csv, ",%s,%s,%s,%zu,%zu,%s", hx_dtype_name(c->dt), hx_rows_ops[c->op].name,
            sched_names[c->sched], c->rows, c->cols, status);
}

/* Measures one (op, rows, cols, schedule); inv_us is the invariant time of
 * the same shape (< 0: not measured), *us receives this one's. */
static int rows_measure(bench *b, const rows_cfg *cfg, double inv_us, double *us) {
    rows_cfg c = *cfg;
    *us = -1;
    if (!rows_fits(b, c.op, c.dt, c.rows, c.cols) ||
        c.rows > (c.op == HX_ADD_RMSNORM ? b->rpool_rows : b->pool_rows)) {
        printf("%-11s %-5s %6zu %7zu %-9s skipped: buffers exceed 25%% of the device memory or "
               "CL_DEVICE_MAX_MEM_ALLOC_SIZE\n",
               hx_rows_ops[c.op].name, hx_dtype_name(c.dt), c.rows, c.cols, sched_names[c.sched]);
        rows_csv_fields(b, &c, "skipped");
        fprintf(b->rows_csv, ",,,,,,,,%.3f,,%.3f,,,,,\n", b->copy_gbs, b->launch_us);
        return 0;
    }
    c.slots = (c.op == HX_ADD_RMSNORM ? b->rpool_rows : b->pool_rows) / c.rows;
    double ms = 0, host_ms = 0, err0 = 0, errlast = 0;
    int inner = 0;
    uint64_t hash0 = 0;
    if (time_calls(b, rows_call, &c, &ms, &inner, &host_ms)) return 1;
    if (rows_check(b, &c, &err0, &errlast, &hash0)) return 1;
    const double bytes = hx_rows_traffic(c.op, c.dt, c.rows, c.cols);
    const double gbs = bytes / (ms * 1e-3) * 1e-9, frac = b->copy_gbs > 0 ? gbs / b->copy_gbs : 0;
    const double tol = rows_tolerance(c.dt);
    const int ok = err0 <= tol && errlast <= tol;
    if (!ok) b->any_bad = 1;
    *us = ms * 1e3;
    char ratio[16] = "";
    if (c.sched == SCHED_ADAPTIVE && inv_us > 0)
        snprintf(ratio, sizeof ratio, "%.2f", *us / inv_us);
    printf("%-11s %-5s %6zu %7zu %-9s %6zu %6d %10.2f %8.2f %8.1f %5.1f%% %9s %8.1e %5s\n",
           hx_rows_ops[c.op].name, hx_dtype_name(c.dt), c.rows, c.cols, sched_names[c.sched],
           c.slots,
           b->reps * inner, *us, host_ms * 1e3, gbs, 100.0 * frac, *ratio ? ratio : "-",
           errlast > err0 ? errlast : err0, ok ? "ok" : "BAD");
    fflush(stdout);
    rows_csv_fields(b, &c, "ok");
    fprintf(b->rows_csv, ",%d,%d,%zu,%.3f,%.3f,%.0f,%.3f,%.3f,%.4f,%.3f,%s,%.3e,%.3e,%s,%016llx\n",
            b->reps, inner, c.slots, *us, host_ms * 1e3, bytes, gbs, b->copy_gbs, frac,
            b->launch_us, ratio, err0, errlast, ok ? "ok" : "BAD", (unsigned long long)hash0);
    rows_result r = {c.dt, c.op, c.sched, c.rows, c.cols, *us};
    return push((void **)&b->rres, &b->nrres, &b->caprres, &r, sizeof r);
}

static int run_rows_shape(bench *b, binv_dtype dt, size_t cols) {
    printf("\n== rows %s  cols=%zu  (invariant chunk %zu) ==\n", hx_dtype_name(dt), cols,
           binv_rows_chunk_size(dt, cols));
    if (setup_rows_shape(b, dt, cols)) return 1;
    rows_print_header();
    for (int oi = 0; oi < b->opt.nrops; oi++) {
        const int op = b->opt.rops[oi];
        for (int s = 0; s < 2; s++) {
            hx_hashset_free(&b->rpat[s]);
            b->rmeas[s] = 0;
        }
        for (int ri = 0; ri < b->opt.rows.n; ri++) {
            double inv_us = -1;
            for (int s = 0; s < 2; s++) {
                if (!(s == SCHED_INVARIANT ? b->opt.run_invariant : b->opt.run_adaptive)) continue;
                const rows_cfg c = {op, s, dt, b->opt.rows.v[ri], cols, 0};
                double us;
                if (rows_measure(b, &c, inv_us, &us)) return 1;
                if (s == SCHED_INVARIANT) inv_us = us;
            }
        }
        for (int s = 0; s < 2; s++) {
            if (!b->rmeas[s]) continue;
            inv_summary sum = {dt, cols, 0, s, op, b->rmeas[s], b->rpat[s].count};
            if (push((void **)&b->rinv, &b->nrinv, &b->caprinv, &sum, sizeof sum)) return 1;
        }
    }
    free_rows_shape(b);
    return 0;
}

int run_rows(bench *b) {
    printf("\nRow reductions (eps %g): bytes moved per call = esz x (matrices read + written) x "
           "rows x cols + esz x vectors x cols: x read once and y written once (add_rmsnorm: x "
           "and residual read, x and y written; row_sum/row_mean: 4 B per row written), "
           "weight/gamma/beta read once; the split path's workspace is not counted\n",
           (double)ROWS_EPS);
    printf("columns: copies = input copies rotated; us/call = median time per call; host-us = "
           "host time to issue a call (library checks and enqueues); GB/s = bytes moved / time; "
           "%%BW = that / copy bandwidth; adapt/inv = adaptive time / invariant time; err = "
           "max |y - ref| / max |ref| over rows 0 and rows-1\n");
    if (open_csv(&b->rows_csv, b->opt.rows_csv,
                 "device,dtype,op,schedule,rows,cols,status,reps,calls_per_rep,copies,"
                 "us_per_call,host_us_per_call,bytes_per_call,gbs,copy_gbs,frac_copy_bw,"
                 "launch_floor_us,adaptive_over_invariant,err_row0,err_row_last,check,"
                 "row0_fnv1a64\n"))
        return 1;
    for (int d = 0; d < b->opt.ndtypes; d++)
        for (int ci = 0; ci < b->opt.cols.n; ci++)
            if (run_rows_shape(b, b->opt.dtypes[d], b->opt.cols.v[ci])) return 1;
    print_rows_summary(b);
    return close_csv(&b->rows_csv, b->opt.rows_csv);
}
