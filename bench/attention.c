/* binv-bench, attention over the paged KV cache: decode steps (batch x
 * context, one new token per sequence) and a one-sequence prefill, 32 query
 * heads / 8 KV heads / head_dim 128, adaptive vs invariant. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { ATTN_HEADS = 32, ATTN_KV_HEADS = 8, ATTN_D = 128 };

typedef struct attn_cfg {
    int sched;
    binv_kv_cache cache;
    binv_kv_batch *batch[2]; /* per schedule: a batch belongs to one context */
    cl_mem q, o;
    float scale;
} attn_cfg;

static int attn_call(bench *b, const void *cfg, unsigned long slot) {
    const attn_cfg *c = cfg;
    (void)slot;
    const size_t ld = ATTN_HEADS * ATTN_D;
    binv_status st = binv_attention(b->binv[c->sched], b->queue, &c->cache, c->batch[c->sched],
                                    ATTN_HEADS, c->scale, c->q, 0, ld, c->o, 0, ld, 0, NULL, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv_attention: %s", binv_context_last_error(b->binv[c->sched]));
    return 0;
}

/* One shape: `seqs` sequences of `ctx` tokens, `qlen` new tokens each
 * (1: decode; ctx: prefill), pages shuffled over the pool.  Times both
 * schedules, prints and writes one row each. */
static int attn_shape(bench *b, FILE *csv, binv_dtype dt, const char *kind, size_t seqs,
                      size_t ctx, size_t qlen) {
    const size_t es = hx_dtype_size(dt), kvd = ATTN_KV_HEADS * ATTN_D;
    const size_t pps = (ctx + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE, pages = seqs * pps;
    const size_t pool = pages * BINV_KV_PAGE_SIZE * kvd * es, T = seqs * qlen;
    const size_t qbytes = T * ATTN_HEADS * ATTN_D * es;
    if (pool > b->max_alloc || 2 * (cl_ulong)pool + 2 * qbytes > b->global_mem / 10 * 8) {
        printf("%-8s %-5s %6zu %7zu  skipped: the pools need 2 x %.1f GB\n", kind,
               hx_dtype_name(dt), seqs, ctx, (double)pool / 1e9);
        return 0;
    }
    attn_cfg c;
    memset(&c, 0, sizeof c);
    c.scale = 1.0f / sqrtf((float)ATTN_D);
    c.cache = (binv_kv_cache){dt, pages, ATTN_KV_HEADS, ATTN_D, NULL, NULL};
    cl_uint *ql = malloc(seqs * sizeof *ql), *cl = malloc(seqs * sizeof *cl);
    cl_uint *pt = malloc(pages * sizeof *pt);
    unsigned char *hq = malloc(qbytes), pattern[128];
    int rc = 0;
    if (!ql || !cl || !pt || !hq) rc = fail("out of host memory");
    uint64_t r = 12345;
    if (!rc) hx_attention_shuffled_pages(pt, pages, &r); /* non-contiguous pages */
    for (size_t s = 0; !rc && s < seqs; s++) { ql[s] = (cl_uint)qlen; cl[s] = (cl_uint)ctx; }
    uint64_t seed = 77;
    if (!rc) hx_fill_unit(dt, hq, T * ATTN_HEADS * ATTN_D, &seed);
    if (!rc) hx_fill_unit(dt, pattern, sizeof pattern / es, &seed);
    if (!rc) rc = create_buffer(b, pool, NULL, &c.cache.k, "K pool");
    if (!rc) rc = create_buffer(b, pool, NULL, &c.cache.v, "V pool");
    if (!rc) rc = create_buffer(b, qbytes, hq, &c.q, "Q");
    if (!rc) rc = create_buffer(b, qbytes, NULL, &c.o, "O");
    /* Pool contents: a 128-byte pattern repeated (the kernels' speed does not
     * depend on the values). */
    if (!rc && clEnqueueFillBuffer(b->queue, c.cache.k, pattern, sizeof pattern, 0, pool, 0, NULL,
                                   NULL) != CL_SUCCESS)
        rc = fail("clEnqueueFillBuffer failed");
    if (!rc && clEnqueueFillBuffer(b->queue, c.cache.v, pattern, sizeof pattern, 0, pool, 0, NULL,
                                   NULL) != CL_SUCCESS)
        rc = fail("clEnqueueFillBuffer failed");
    double us[2] = {0, 0};
    for (int sc = 0; !rc && sc < 2; sc++) {
        if (!b->binv[sc]) continue;
        binv_status st = binv_kv_batch_create(b->binv[sc], b->queue, pages, seqs, ql, cl, pt, pps,
                                              &c.batch[sc]);
        if (st != BINV_SUCCESS) {
            rc = fail("binv_kv_batch_create: %s", binv_context_last_error(b->binv[sc]));
            break;
        }
        c.sched = sc;
        double ms = 0;
        int inner = 0;
        if ((rc = time_calls(b, attn_call, &c, &ms, &inner, NULL))) break;
        us[sc] = 1e3 * ms;
    }
    /* decode: KV bytes read; prefill: 2 flops per multiply-add of QK^T and PV
     * over the causal triangle. */
    const double kv_bytes = 2.0 * (double)seqs * (double)ctx * (double)kvd * (double)es;
    const double flops = hx_attention_flops(ATTN_HEADS, ATTN_D, seqs, ctx, qlen);
    for (int sc = 0; !rc && sc < 2; sc++) {
        if (!b->binv[sc]) continue;
        const double gbs = kv_bytes / (us[sc] * 1e3), tf = flops / (us[sc] * 1e6);
        const double ratio = b->binv[0] && b->binv[1] ? us[1] / us[0] : 0.0;
        printf("%-8s %-5s %6zu %7zu  %-9s %10.1f %8.1f %6.1f%% %8.2f %7.2f\n", kind,
               hx_dtype_name(dt), seqs, ctx, sched_names[sc], us[sc], gbs,
               100.0 * gbs / b->copy_gbs, tf, ratio);
        fprintf(csv, "%s,%s,%s,%s,%zu,%zu,%zu,%d,%d,%d,%.3f,%.0f,%.2f,%.2f,%.4f,%.4f,%.4f\n",
                b->dev.name, hx_dtype_name(dt), kind, sched_names[sc], seqs, ctx, qlen,
                ATTN_HEADS, ATTN_KV_HEADS, ATTN_D, us[sc], kv_bytes, gbs, b->copy_gbs,
                gbs / b->copy_gbs, tf, ratio);
    }
    for (int sc = 0; sc < 2; sc++) binv_kv_batch_destroy(c.batch[sc]);
    release_mem(&c.cache.k);
    release_mem(&c.cache.v);
    release_mem(&c.q);
    release_mem(&c.o);
    free(ql); free(cl); free(pt); free(hq);
    return rc;
}

int run_attention(bench *b) {
    printf("\nAttention over the paged KV cache: %d query heads, %d KV heads, head_dim %d, page "
           "%d tokens, pages shuffled\n", ATTN_HEADS, ATTN_KV_HEADS, ATTN_D, BINV_KV_PAGE_SIZE);
    printf("columns: us = median time of one binv_attention call (K/V already appended); GB/s "
           "= K+V bytes of the contexts / time; %%BW = that / copy bandwidth; TFLOP/s = "
           "4*heads*head_dim*(causal pairs) / time; adapt/inv = adaptive time / invariant "
           "time\n");
    printf("%-8s %-5s %6s %7s  %-9s %10s %8s %7s %8s %7s\n", "kind", "dtype", "seqs", "ctx",
           "schedule", "us", "GB/s", "%BW", "TFLOP/s", "ad/inv");
    FILE *csv = NULL;
    if (open_csv(&csv, b->opt.attn_csv,
                 "device,dtype,kind,schedule,seqs,ctx,q_len,heads,kv_heads,head_dim,us_per_call,"
                 "kv_bytes,kv_gbs,copy_gbs,frac_copy_bw,tflops,adaptive_over_invariant\n"))
        return 1;
    int rc = 0;
    for (int d = 0; !rc && d < b->opt.ndtypes; d++) {
        const binv_dtype dt = b->opt.dtypes[d];
        for (int i = 0; !rc && i < b->opt.attn_batch.n; i++)
            for (int j = 0; !rc && j < b->opt.attn_ctx.n; j++)
                rc = attn_shape(b, csv, dt, "decode", b->opt.attn_batch.v[i],
                                b->opt.attn_ctx.v[j], 1);
        if (!rc && b->opt.attn_prefill)
            rc = attn_shape(b, csv, dt, "prefill", 1, b->opt.attn_prefill, b->opt.attn_prefill);
    }
    int crc = close_csv(&csv, b->opt.attn_csv);
    return rc ? rc : crc;
}
