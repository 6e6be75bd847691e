/* The attention family: one sequence's token decoded in steps of 1..N
 * sequences, and computed in one-shot, chunked and decode prefills. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "study_tool.h"

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
    return binv_failed(ctx, st, "attention");
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

int attention_run(study *s, const options *o, FILE *csv) {
    const int gpu = (s->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    attn_study a = {0};
    a.heads = o->quick && !gpu ? 8 : 32;
    a.kvh = o->quick && !gpu ? 2 : 8;
    a.D = o->quick && !gpu ? 64 : 128;
    a.L = o->attn_ctx ? o->attn_ctx : o->quick ? (gpu ? 4096 : 1500) : 8192;
    size_t bs[MAX_BATCHES], nb = hx_batch_sizes(o->quick ? (gpu ? 64 : 16) : 128, bs, MAX_BATCHES);
    const size_t bmax = bs[nb - 1];
    a.max_pages = (a.L + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    a.pages =
        a.max_pages + (bmax - 1) * ((OTHER_MAX + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE);
    s->total = s->done = 0;
    for (int d = 0; d < NDTYPES; d++) s->total += 4 * dtype_wanted(o, DTYPES[d]);
    if (csv)
        fprintf(csv, "op,impl,dtype,seqs_or_chunk,ctx,max_abs_diff,max_ulp_diff,distinct_so_far,"
                     "ms_per_call\n");
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

void attention_report(FILE *f, const study *s, const options *o) {
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
    section_tail(f, s, "attention", "b", 0,
                 "Max ulp of the token's output against batch 1 / the one-shot prefill",
                 "Per point: `attention.csv`. Plots: `attention_maxdiff.png`, "
                 "`attention_distinct.png`.");
}

void attention_plot(FILE *g, const study *s, const options *o) {
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
