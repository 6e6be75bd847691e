/* binv-bench, decode steps end to end: binv-llm's engine (tools/llm) on a
 * synthetic Llama-shaped model, `batch` sequences each `ctx` positions deep,
 * one new token per sequence per step, logits of every sequence computed and
 * left on the device.  Reported against the step's memory floor: the bytes
 * the step must read (every weight once, and the K/V of every cached
 * position) over the device copy bandwidth measured at the start of the run.
 *
 * The contexts are filled with llm_engine_seq_advance (the K/V pages keep
 * the zeros of the pool): a step's cost depends on the context length, not
 * on the cached values.  bench/torch_reference.py runs the same shapes in
 * PyTorch for the comparison. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "llm.h"

typedef struct decode_impl {
    const char *name;
    int sched; /* index into b->binv */
} decode_impl;

/* Times `steps` decode steps of `batch` sequences at context `ctx` (after
 * two warm-up steps).  *ms: median wall time of one step, clFinish included. */
static int decode_time(bench *b, llm_engine *e, size_t batch, size_t ctx, int steps,
                       double *ms) {
    int rc = 0;
    llm_work *w = calloc(batch, sizeof *w);
    int *tok = calloc(batch, sizeof *tok);
    double *t = calloc((size_t)steps, sizeof *t);
    if (!w || !tok || !t) rc = fail("out of host memory");
    size_t begun = 0;
    for (; !rc && begun < batch; begun++) {
        const int s = (int)begun;
        if (llm_engine_seq_begin(e, s, (int)ctx + steps + 2) ||
            llm_engine_seq_advance(e, s, (int)ctx - 1))
            rc = fail("decode: %s", llm_engine_error(e));
        tok[s] = (int)(1 + 7 * begun);
    }
    for (int i = -2; !rc && i < steps; i++) {
        for (size_t s = 0; s < batch; s++)
            w[s] = (llm_work){(int)s, (int)ctx - 1 + i + 2, 1, &tok[s], 1};
        const double t0 = (1e3 * hx_now_s());
        if (llm_engine_step(e, w, (int)batch, NULL)) {
            rc = fail("decode step: %s", llm_engine_error(e));
            break;
        }
        if (i >= 0) t[i] = (1e3 * hx_now_s()) - t0;
    }
    if (!rc) *ms = median(t, steps);
    for (size_t s = 0; s < begun; s++) llm_engine_seq_end(e, (int)s);
    free(w), free(tok), free(t);
    return rc;
}

/* The model shape: "1b" (Llama-3.2-1B: tied embeddings), "tiny", or
 * "dim,hidden,layers,heads,kv_heads,vocab". */
static int decode_config(const char *name, llm_config *c) {
    memset(c, 0, sizeof *c);
    if (!strcmp(name, "1b")) {
        *c = (llm_config){2048, 8192, 16, 32, 8, 128256, 4096, 1};
        return 0;
    }
    if (!strcmp(name, "tiny")) {
        *c = (llm_config){256, 768, 2, 8, 2, 4096, 1024, 1};
        return 0;
    }
    int v[6], n = 0;
    if (sscanf(name, "%d,%d,%d,%d,%d,%d%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &n) != 6 ||
        name[n])
        return fail("--decode-model: 1b, tiny or dim,hidden,layers,heads,kv_heads,vocab, not "
                    "'%s'", name);
    *c = (llm_config){v[0], v[1], v[2], v[3], v[4], v[5], 0, 1};
    return 0;
}

int run_decode(bench *b) {
    const options *o = &b->opt;
    llm_config cfg;
    if (decode_config(o->decode_model, &cfg)) return 1;
    size_t max_batch = 0, max_ctx = 0;
    for (int i = 0; i < o->decode_batch.n; i++)
        if (o->decode_batch.v[i] > max_batch) max_batch = o->decode_batch.v[i];
    for (int i = 0; i < o->decode_ctx.n; i++)
        if (o->decode_ctx.v[i] > max_ctx) max_ctx = o->decode_ctx.v[i];
    if (max_batch > 4096 || max_ctx > (1u << 20) || max_ctx < 1)
        return fail("decode: batch sizes must be at most 4096 and contexts in 1..2^20");
    cfg.seq_len = (int)max_ctx + o->decode_steps + 2;
    char err[1024];
    if (llm_config_check(&cfg, err, sizeof err)) return fail("decode model: %s", err);
    printf("\nDecode steps (binv-llm engine, synthetic model dim %d, hidden %d, %d layers, "
           "%d/%d heads, vocab %d, tied embeddings)\n",
           cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size);
    printf("columns: ms = median wall time of one step (every sequence's logits computed, left "
           "on the device; clFinish included); tok/s = batch / ms; floor = (weight bytes + K/V "
           "bytes of the contexts) / copy bandwidth; x floor = ms / floor\n");
    printf("%-15s %-5s %6s %7s %9s %10s %9s %8s\n", "impl", "dtype", "batch", "ctx", "ms",
           "tok/s", "floor ms", "x floor");
    FILE *csv = NULL;
    if (open_csv(&csv, o->decode_csv,
                 "device,impl,dtype,dim,hidden,layers,heads,kv_heads,vocab,batch,ctx,steps,"
                 "ms_per_step,tokens_per_s,weight_bytes,kv_bytes,copy_gbs,floor_ms,"
                 "over_floor\n"))
        return 1;
    llm_model m;
    double t0 = (1e3 * hx_now_s());
    int rc = llm_model_synthetic(&cfg, 1, &m, err, sizeof err) ? fail("decode model: %s", err)
                                                                : 0;
    if (!rc) printf("(synthetic weights generated in %.1f s)\n", ((1e3 * hx_now_s()) - t0) / 1e3);
    const decode_impl impls[] = {{"binv-invariant", SCHED_INVARIANT},
                                 {"binv-native", SCHED_NATIVE},
                                 {"binv-adaptive", SCHED_ADAPTIVE}};
    for (int d = 0; !rc && d < o->ndtypes; d++) {
        const binv_dtype dt = o->dtypes[d];
        for (size_t k = 0; !rc && k < sizeof impls / sizeof *impls; k++) {
            binv_context *ctx = b->binv[impls[k].sched];
            if (!ctx || (impls[k].sched == SCHED_NATIVE && dt == BINV_DTYPE_F32)) continue;
            const llm_engine_opts eo = {dt, (int)max_batch, (int)max_batch, cfg.seq_len, 0, 7};
            t0 = (1e3 * hx_now_s());
            llm_engine *e = llm_engine_create(ctx, b->dev.context, b->queue, &m, &eo, err,
                                              sizeof err);
            if (!e) {
                /* A model or cache too large for this device is a skip, not a failure. */
                printf("%-15s %-5s skipped: %s\n", impls[k].name, hx_dtype_name(dt), err);
                continue;
            }
            printf("(%s engine created in %.1f s)\n", impls[k].name, ((1e3 * hx_now_s()) - t0) / 1e3);
            const double wbytes = (double)llm_engine_weight_bytes(e);
            for (int i = 0; !rc && i < o->decode_batch.n; i++)
                for (int j = 0; !rc && j < o->decode_ctx.n; j++) {
                    const size_t B = o->decode_batch.v[i], C = o->decode_ctx.v[j];
                    double ms = 0;
                    if ((rc = decode_time(b, e, B, C, o->decode_steps, &ms))) break;
                    const double kvb =
                        (double)llm_engine_kv_bytes_per_position(e) * (double)B * (double)C;
                    const double floor_ms = (wbytes + kvb) / (b->copy_gbs * 1e6);
                    printf("%-15s %-5s %6zu %7zu %9.3f %10.0f %9.3f %8.2f\n", impls[k].name,
                           hx_dtype_name(dt), B, C, ms, 1e3 * (double)B / ms, floor_ms,
                           ms / floor_ms);
                    fprintf(csv, "%s,%s,%s,%d,%d,%d,%d,%d,%d,%zu,%zu,%d,%.4f,%.1f,%.0f,%.0f,%.1f,"
                                 "%.4f,%.3f\n",
                            b->dev.name, impls[k].name, hx_dtype_name(dt), cfg.dim,
                            cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
                            cfg.vocab_size, B, C, o->decode_steps, ms, 1e3 * (double)B / ms,
                            wbytes, kvb, b->copy_gbs, floor_ms, ms / floor_ms);
                }
            llm_engine_destroy(e);
        }
    }
    llm_model_free(&m);
    int crc = close_csv(&csv, o->decode_csv);
    return rc ? rc : crc;
}
