/* The row-reduction family: rmsnorm, add_rmsnorm, layernorm, softmax,
 * log_softmax and row_sum of row 0 alone and inside batches of rows, for
 * libbinv adaptive and invariant. */
#include <stdlib.h>
#include <string.h>

#include "study_tool.h"

typedef struct rows_case {
    hx_rows_op rop; /* named hx_rows_ops[rop].name */
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
    {HX_RMSNORM, 4096, 1.0f, "hidden size of Llama-2/3 7-8B"},
    {HX_RMSNORM, 14336, 1.0f, "Llama-3-8B MLP width"},
    {HX_ADD_RMSNORM, 4096, 1.0f, "residual add + norm, hidden 4096"},
    {HX_LAYERNORM, 4096, 1.0f, "hidden 4096"},
    {HX_SOFTMAX, 152064, 8.0f, "Qwen2 vocabulary, logits in (-8, 8)"},
    {HX_LOG_SOFTMAX, 152064, 8.0f, "Qwen2 vocabulary"},
    {HX_ROW_SUM, 14336, 1.0f, "f32 sum of a 14,336-wide row"},
};
enum { NROWS_CASES = sizeof ROWS_CASES / sizeof ROWS_CASES[0] };

/* Rows op c->rop over b rows of the batch (harness/op_rows.c). */
static int rows_call(study *s, const op_case *c, impl_id impl, size_t b) {
    binv_context *ctx = impl == IMPL_ADAPTIVE ? s->adapt : s->inv;
    const size_t n = c->in_cols;
    const hx_rows p = {.op = (hx_rows_op)c->rop, .dt = c->dt, .rows = b, .cols = n, .eps = 1e-5f,
                       .x = c->in, .ldx = n, .r = c->res, .ldr = n, .w = c->w, .b = c->w2,
                       .y = c->out, .ldy = n};
    return binv_failed(ctx, hx_rows_binv(ctx, s->dev.queue, &p, NULL), c->op);
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

int rows_run(study *s, const options *o, FILE *csv) {
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
            snprintf(c.op, sizeof c.op, "%s", hx_rows_ops[rcase->rop].name);
            snprintf(c.shape, sizeof c.shape, "cols=%zu", cols);
            c.rop = rcase->rop;
            c.dt = dt;
            const int f32_out = hx_rows_ops[rcase->rop].f32_out;
            c.out_dt = f32_out ? BINV_DTYPE_F32 : dt;
            c.in_cols = cols;
            c.out_cols = f32_out ? 1 : cols;
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
            if (!rc && (c.rop == HX_RMSNORM || c.rop == HX_ADD_RMSNORM || c.rop == HX_LAYERNORM)) {
                fill(dt, h, cols, 11, 0.25f, 1.0f);
                if (!(c.w = buffer(s, cols * es, h))) rc = -1;
            }
            if (!rc && c.rop == HX_LAYERNORM) {
                fill(dt, h, cols, 12, 0.1f, 0.0f);
                if (!(c.w2 = buffer(s, cols * es, h))) rc = -1;
            }
            if (!rc && c.rop == HX_ADD_RMSNORM) {
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

void rows_report(FILE *f, const study *s, const options *o) {
    fprintf(f, "## Row reductions: one row alone vs inside a batch of rows\n\n"
               "rmsnorm, add_rmsnorm, layernorm, softmax, log_softmax and row_sum of row 0 "
               "computed alone and as row 0 of batches of rows (the other rows hold other "
               "requests, different for every batch size). Widths: ");
    for (int i = 0; i < NROWS_CASES; i++)
        fprintf(f, "%s%s %zu (%s)", i ? ", " : "", hx_rows_ops[ROWS_CASES[i].rop].name,
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
    section_tail(f, s, "rows", "rows", 1, "\nMax ulp of row 0 against rows = 1",
                 "Per batch size: `rows.csv` (chunk_width: the invariant width, or the adaptive "
                 "rule's). Plots: `rows_maxdiff.png`, `rows_distinct.png`.");
}

void rows_plot(FILE *g, const study *s, const options *o) {
    panel p[NROWS_CASES];
    for (int i = 0; i < NROWS_CASES; i++) {
        p[i].op = hx_rows_ops[ROWS_CASES[i].rop].name;
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
