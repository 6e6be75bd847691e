/* The OpenCL engine: a Llama forward pass over a batch of tokens from several
 * sequences per step, on libbinv-cl's public API only, with a paged KV cache.
 *
 * Per step: embedding rows (host table) -> x; per layer:
 *   xb = rmsnorm(x)                     (layer 0; later layers fuse the residual
 *                                        add of the previous FFN: x += ffn_out)
 *   qkv = xb . [wq|wk|wv]^T             (one GEMM, concatenated weights)
 *   rope(q), rope(k)                    (positions from the kv batch)
 *   kv_append(k, v); att = attention(q)
 *   tmp = att . wo^T
 *   xb = add_rmsnorm(x += tmp)
 *   hb = xb . [w1|w3]^T; act = swiglu(hb[:, :h], hb[:, h:])
 *   tmp = act . w2^T
 * then for the rows that need logits only: xf = add_rmsnorm(x += tmp) with
 * rms_final, logits = xf . wcls^T, read back. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "harness.h"

struct llm_engine {
    binv_context *ctx;
    cl_context cl;
    cl_command_queue q;
    binv_dtype dt;
    size_t es;
    llm_config cfg;
    int max_slots, max_tokens, max_len;
    size_t max_pages, num_pages;
    unsigned char *emb; /* host embedding table in dtype */
    cl_mem *wqkv, *wo, *w13, *w2, *kpool, *vpool;
    cl_mem rms_att, rms_ffn, rms_final, wcls;
    cl_mem x, xb, qkv, att, tmp, hb, act, xf, logits;
    unsigned char *stage, *lbuf;
    /* pages */
    cl_uint *free_list;
    size_t nfree, reserved_total;
    cl_uint *pages;                 /* [slot][max_pages] */
    int *npages, *reserved, *len, *active;
    uint64_t rng;
    cl_uint *q_lens, *ctx_lens, *pt;
    char err[2048];
};

static void seterr(llm_engine *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof e->err, fmt, ap);
    va_end(ap);
}

const char *llm_engine_error(const llm_engine *e) { return e->err; }

cl_mem llm_engine_logits(const llm_engine *e) { return e->logits; }
int llm_engine_max_slots(const llm_engine *e) { return e->max_slots; }
int llm_engine_max_tokens(const llm_engine *e) { return e->max_tokens; }

uint64_t llm_engine_weight_bytes(const llm_engine *e) {
    const llm_config *c = &e->cfg;
    const uint64_t L = (uint64_t)c->n_layers, d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim,
                   kv = (uint64_t)llm_kv_dim(c), V = (uint64_t)c->vocab_size;
    /* wqkv, wo, w1|w3, w2 and the two norm vectors per layer; rms_final; wcls. */
    const uint64_t per_layer = (d + 2 * kv) * d + d * d + 2 * h * d + d * h + 2 * d;
    return (L * per_layer + d + V * d) * (uint64_t)e->es;
}

uint64_t llm_engine_kv_bytes_per_position(const llm_engine *e) {
    return 2 * (uint64_t)e->cfg.n_layers * (uint64_t)llm_kv_dim(&e->cfg) * (uint64_t)e->es;
}

/* Converts n floats to the dtype into dst. */
static void convert(binv_dtype dt, void *dst, const float *src, size_t n) {
    if (dt == BINV_DTYPE_F32) memcpy(dst, src, n * 4);
    else
        for (size_t i = 0; i < n; i++) hx_store(dt, dst, i, src[i]);
}

/* A device buffer holding `parts` float arrays converted and concatenated. */
static cl_mem upload(llm_engine *e, int parts, const float **src, const size_t *n) {
    size_t total = 0;
    for (int i = 0; i < parts; i++) total += n[i];
    unsigned char *h = malloc(total * e->es);
    if (!h) {
        seterr(e, "out of host memory (%zu bytes)", total * e->es);
        return NULL;
    }
    size_t off = 0;
    for (int i = 0; i < parts; i++) {
        convert(e->dt, h + off * e->es, src[i], n[i]);
        off += n[i];
    }
    cl_int err;
    cl_mem b = clCreateBuffer(e->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, total * e->es, h,
                              &err);
    free(h);
    if (err != CL_SUCCESS) {
        seterr(e, "clCreateBuffer(%zu bytes of weights): %d", total * e->es, err);
        return NULL;
    }
    return b;
}

static cl_mem scratch(llm_engine *e, size_t elems) {
    cl_int err;
    cl_mem b = clCreateBuffer(e->cl, CL_MEM_READ_WRITE, (elems ? elems : 1) * e->es, NULL, &err);
    if (err != CL_SUCCESS) {
        seterr(e, "clCreateBuffer(%zu bytes): %d", elems * e->es, err);
        return NULL;
    }
    return b;
}

static void shuffle(cl_uint *a, size_t n, uint64_t *rng) {
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)(hx_rng_next(rng) % i);
        const cl_uint t = a[i - 1];
        a[i - 1] = a[j], a[j] = t;
    }
}

llm_engine *llm_engine_create(binv_context *ctx, cl_context clctx, cl_command_queue queue,
                              const llm_model *m, const llm_engine_opts *o, char *err,
                              size_t errlen) {
    llm_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    const llm_config *c = &m->cfg;
    e->ctx = ctx, e->cl = clctx, e->q = queue, e->dt = o->dtype, e->cfg = *c;
    e->es = hx_dtype_size(o->dtype);
    e->max_slots = o->max_slots > 0 ? o->max_slots : 1;
    e->max_tokens = o->max_tokens > 0 ? o->max_tokens : 1;
    e->max_len = o->max_len > 0 && o->max_len < c->seq_len ? o->max_len : c->seq_len;
    e->max_pages = ((size_t)e->max_len + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    e->num_pages = o->num_pages ? o->num_pages : (size_t)e->max_slots * e->max_pages;
    e->rng = o->page_seed;
    const size_t L = (size_t)c->n_layers, d = (size_t)c->dim, h = (size_t)c->hidden_dim,
                 kv = (size_t)llm_kv_dim(c), V = (size_t)c->vocab_size,
                 T = (size_t)e->max_tokens, S = (size_t)e->max_slots;
    const size_t qkvw = d + 2 * kv;
    /* Rows of logits a step can return: one per sequence, or one per token
     * (LLM_LOGITS_ALL). */
    const size_t LR = S > T ? S : T;

    e->emb = malloc(V * d * e->es);
    e->wqkv = calloc(L, sizeof(cl_mem)), e->wo = calloc(L, sizeof(cl_mem));
    e->w13 = calloc(L, sizeof(cl_mem)), e->w2 = calloc(L, sizeof(cl_mem));
    e->kpool = calloc(L, sizeof(cl_mem)), e->vpool = calloc(L, sizeof(cl_mem));
    e->stage = malloc(T * d * e->es);
    e->lbuf = malloc(LR * V * e->es);
    e->free_list = malloc(e->num_pages * sizeof(cl_uint));
    e->pages = calloc(S * e->max_pages, sizeof(cl_uint));
    e->npages = calloc(S, sizeof(int)), e->reserved = calloc(S, sizeof(int));
    e->len = calloc(S, sizeof(int)), e->active = calloc(S, sizeof(int));
    e->q_lens = malloc(S * sizeof(cl_uint)), e->ctx_lens = malloc(S * sizeof(cl_uint));
    e->pt = malloc(S * e->max_pages * sizeof(cl_uint));
    if (!e->emb || !e->wqkv || !e->wo || !e->w13 || !e->w2 || !e->kpool || !e->vpool ||
        !e->stage || !e->lbuf || !e->free_list || !e->pages || !e->npages || !e->reserved ||
        !e->len || !e->active || !e->q_lens || !e->ctx_lens || !e->pt) {
        seterr(e, "out of host memory");
        goto fail;
    }
    convert(e->dt, e->emb, m->tok_emb, V * d);
    for (size_t l = 0; l < L; l++) {
        const float *qkv_src[3] = {m->wq + l * d * d, m->wk + l * kv * d, m->wv + l * kv * d};
        const size_t qkv_n[3] = {d * d, kv * d, kv * d};
        const float *o_src[1] = {m->wo + l * d * d};
        const size_t o_n[1] = {d * d};
        const float *w13_src[2] = {m->w1 + l * h * d, m->w3 + l * h * d};
        const size_t w13_n[2] = {h * d, h * d};
        const float *w2_src[1] = {m->w2 + l * d * h};
        const size_t w2_n[1] = {d * h};
        if (!(e->wqkv[l] = upload(e, 3, qkv_src, qkv_n)) || !(e->wo[l] = upload(e, 1, o_src, o_n)) ||
            !(e->w13[l] = upload(e, 2, w13_src, w13_n)) ||
            !(e->w2[l] = upload(e, 1, w2_src, w2_n)))
            goto fail;
        const size_t pool = e->num_pages * BINV_KV_PAGE_SIZE * kv;
        if (!(e->kpool[l] = scratch(e, pool)) || !(e->vpool[l] = scratch(e, pool))) goto fail;
    }
    {
        const float *ra[1] = {m->rms_att}, *rf[1] = {m->rms_ffn}, *rn[1] = {m->rms_final},
                    *wc[1] = {m->wcls};
        const size_t nl[1] = {L * d}, nd[1] = {d}, nv[1] = {V * d};
        if (!(e->rms_att = upload(e, 1, ra, nl)) || !(e->rms_ffn = upload(e, 1, rf, nl)) ||
            !(e->rms_final = upload(e, 1, rn, nd)) || !(e->wcls = upload(e, 1, wc, nv)))
            goto fail;
    }
    if (!(e->x = scratch(e, T * d)) || !(e->xb = scratch(e, T * d)) ||
        !(e->qkv = scratch(e, T * qkvw)) || !(e->att = scratch(e, T * d)) ||
        !(e->tmp = scratch(e, T * d)) || !(e->hb = scratch(e, T * 2 * h)) ||
        !(e->act = scratch(e, T * h)) ||
        !(e->xf = scratch(e, LR * d)) || !(e->logits = scratch(e, LR * V)))
        goto fail;
    /* Pages hold zeros until written: a page handed to a sequence by
     * llm_engine_seq_advance is never read uninitialised. */
    for (size_t l = 0; l < L; l++) {
        const cl_uchar zero = 0;
        const size_t pool = e->num_pages * BINV_KV_PAGE_SIZE * kv * e->es;
        cl_int ce = clEnqueueFillBuffer(e->q, e->kpool[l], &zero, 1, 0, pool, 0, NULL, NULL);
        if (ce == CL_SUCCESS)
            ce = clEnqueueFillBuffer(e->q, e->vpool[l], &zero, 1, 0, pool, 0, NULL, NULL);
        if (ce != CL_SUCCESS) {
            seterr(e, "clEnqueueFillBuffer(KV pool): OpenCL error %d", ce);
            goto fail;
        }
    }
    if (clFinish(e->q) != CL_SUCCESS) {
        seterr(e, "clFinish after the KV pool fill failed");
        goto fail;
    }
    for (size_t i = 0; i < e->num_pages; i++) e->free_list[i] = (cl_uint)i;
    shuffle(e->free_list, e->num_pages, &e->rng);
    e->nfree = e->num_pages;
    return e;
fail:
    snprintf(err, errlen, "%s", e->err);
    llm_engine_destroy(e);
    return NULL;
}

static void rel(cl_mem b) {
    if (b) clReleaseMemObject(b);
}

void llm_engine_destroy(llm_engine *e) {
    if (!e) return;
    for (int l = 0; l < e->cfg.n_layers; l++) {
        if (e->wqkv) rel(e->wqkv[l]);
        if (e->wo) rel(e->wo[l]);
        if (e->w13) rel(e->w13[l]);
        if (e->w2) rel(e->w2[l]);
        if (e->kpool) rel(e->kpool[l]);
        if (e->vpool) rel(e->vpool[l]);
    }
    rel(e->rms_att), rel(e->rms_ffn), rel(e->rms_final), rel(e->wcls);
    rel(e->x), rel(e->xb), rel(e->qkv), rel(e->att), rel(e->tmp), rel(e->hb), rel(e->act), rel(e->xf);
    rel(e->logits);
    free(e->wqkv), free(e->wo), free(e->w13), free(e->w2), free(e->kpool), free(e->vpool);
    free(e->emb), free(e->stage), free(e->lbuf), free(e->free_list), free(e->pages);
    free(e->npages), free(e->reserved), free(e->len), free(e->active);
    free(e->q_lens), free(e->ctx_lens), free(e->pt);
    free(e);
}

/* ---- pages ----------------------------------------------------------------- */

/* Takes pages from the free list until slot s has room for `len` positions. */
static int take_pages(llm_engine *e, int s, size_t len) {
    const size_t need = (len + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    while ((size_t)e->npages[s] < need) {
        if (!e->nfree) { /* cannot happen: reservations cover every page */
            seterr(e, "out of KV pages");
            return -1;
        }
        e->pages[(size_t)s * e->max_pages + e->npages[s]++] = e->free_list[--e->nfree];
    }
    return 0;
}

int llm_engine_seq_begin(llm_engine *e, int slot, int max_len) {
    if (slot < 0 || slot >= e->max_slots || e->active[slot]) {
        seterr(e, "seq_begin: slot %d out of range or busy", slot);
        return -1;
    }
    if (max_len < 1 || max_len > e->max_len) {
        seterr(e, "seq_begin: length %d outside 1..%d", max_len, e->max_len);
        return -1;
    }
    const size_t need = ((size_t)max_len + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    if (e->reserved_total + need > e->num_pages) {
        seterr(e, "seq_begin: %zu pages needed, %zu unreserved", need,
               e->num_pages - e->reserved_total);
        return -1;
    }
    e->reserved_total += need;
    e->reserved[slot] = (int)need;
    e->active[slot] = 1;
    e->len[slot] = 0;
    e->npages[slot] = 0;
    return 0;
}

void llm_engine_seq_end(llm_engine *e, int slot) {
    if (slot < 0 || slot >= e->max_slots || !e->active[slot]) return;
    /* Each page goes back to a random place of the free list, so that later
     * sequences get scattered pages. */
    for (int i = 0; i < e->npages[slot]; i++) {
        const size_t n = e->nfree++;
        const size_t j = (size_t)(hx_rng_next(&e->rng) % (n + 1));
        e->free_list[n] = e->free_list[j];
        e->free_list[j] = e->pages[(size_t)slot * e->max_pages + i];
    }
    e->reserved_total -= (size_t)e->reserved[slot];
    e->reserved[slot] = e->npages[slot] = e->len[slot] = e->active[slot] = 0;
}

int llm_engine_seq_advance(llm_engine *e, int slot, int n) {
    if (slot < 0 || slot >= e->max_slots || !e->active[slot]) {
        seterr(e, "seq_advance: slot %d out of range or not begun", slot);
        return -1;
    }
    if (n < 0 || n > e->reserved[slot] * BINV_KV_PAGE_SIZE - e->len[slot] ||
        n > e->max_len - e->len[slot]) {
        seterr(e, "seq_advance: %d positions after %d (%d reserved, at most %d)", n, e->len[slot],
               e->reserved[slot] * BINV_KV_PAGE_SIZE, e->max_len);
        return -1;
    }
    if (take_pages(e, slot, (size_t)e->len[slot] + (size_t)n)) return -1;
    e->len[slot] += n;
    return 0;
}

int llm_engine_seq_pages(const llm_engine *e, int slot, const cl_uint **pages) {
    if (slot < 0 || slot >= e->max_slots) return 0;
    *pages = e->pages + (size_t)slot * e->max_pages;
    return e->npages[slot];
}

size_t llm_engine_free_pages(const llm_engine *e) { return e->nfree; }

/* ---- the step -------------------------------------------------------------- */

#define CALL(name, expr)                                                                     \
    do {                                                                                     \
        binv_status st_ = (expr);                                                            \
        if (st_ != BINV_SUCCESS) {                                                           \
            seterr(e, "%s (layer %d): %s: %s", name, layer, binv_status_string(st_),         \
                   binv_context_last_error(e->ctx));                                         \
            goto fail;                                                                       \
        }                                                                                    \
    } while (0)

#define CLCALL(name, expr)                                                                   \
    do {                                                                                     \
        cl_int e_ = (expr);                                                                  \
        if (e_ != CL_SUCCESS) {                                                              \
            seterr(e, "%s: OpenCL error %d", name, e_);                                      \
            goto fail;                                                                       \
        }                                                                                    \
    } while (0)

/* Checks a step's work against the slots, their reservations and the
 * vocabulary.  Returns the step's token count, or 0 with a message. */
static size_t step_check(llm_engine *e, const llm_work *w, int nwork) {
    const size_t V = (size_t)e->cfg.vocab_size;
    if (nwork < 1 || nwork > e->max_slots) {
        seterr(e, "step: %d sequences (1..%d)", nwork, e->max_slots);
        return 0;
    }
    size_t T = 0;
    for (int i = 0; i < nwork; i++) {
        const llm_work *x = &w[i];
        if (x->slot < 0 || x->slot >= e->max_slots || !e->active[x->slot]) {
            seterr(e, "step: work %d: slot %d is not active", i, x->slot);
            return 0;
        }
        for (int j = 0; j < i; j++)
            if (w[j].slot == x->slot) {
                seterr(e, "step: slot %d appears twice", x->slot);
                return 0;
            }
        if (x->n < 1 || x->pos0 != e->len[x->slot] ||
            x->pos0 + x->n > e->reserved[x->slot] * BINV_KV_PAGE_SIZE || x->pos0 + x->n > e->max_len) {
            seterr(e, "step: work %d (slot %d): positions %d..%d, sequence length %d, reserved %d",
                   i, x->slot, x->pos0, x->pos0 + x->n - 1, e->len[x->slot],
                   e->reserved[x->slot] * BINV_KV_PAGE_SIZE);
            return 0;
        }
        for (int t = 0; t < x->n; t++)
            if (x->tokens[t] < 0 || (size_t)x->tokens[t] >= V) {
                seterr(e, "step: token id %d out of the vocabulary (%zu)", x->tokens[t], V);
                return 0;
            }
        T += (size_t)x->n;
    }
    if (T > (size_t)e->max_tokens) {
        seterr(e, "step: %zu tokens, more than max_tokens = %d", T, e->max_tokens);
        return 0;
    }
    return T;
}

/* Pages for the new positions, from the shuffled free list, and the step's
 * metadata (query and context lengths, page tables) in work order. */
static int step_pages(llm_engine *e, const llm_work *w, int nwork) {
    for (int i = 0; i < nwork; i++)
        if (take_pages(e, w[i].slot, (size_t)(w[i].pos0 + w[i].n))) return -1;
    for (int i = 0; i < nwork; i++) {
        e->q_lens[i] = (cl_uint)w[i].n;
        e->ctx_lens[i] = (cl_uint)(w[i].pos0 + w[i].n);
        memcpy(e->pt + (size_t)i * e->max_pages, e->pages + (size_t)w[i].slot * e->max_pages,
               e->max_pages * sizeof(cl_uint));
    }
    return 0;
}

/* The transformer layers over the step's T token rows (residual stream in
 * e->x; the last layer's output waits in e->tmp for the final norm). */
static int step_layers(llm_engine *e, binv_kv_batch *batch, size_t T) {
    const llm_config *c = &e->cfg;
    const size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, kv = (size_t)llm_kv_dim(c),
                 hs = (size_t)llm_head_size(c);
    const size_t qkvw = d + 2 * kv;
    const binv_dtype dt = e->dt;
    const float eps = 1e-5f, scale = (float)(1.0 / sqrt((double)hs)), theta = 10000.0f;
    for (int layer = 0; layer < c->n_layers; layer++) {
        const size_t l = (size_t)layer;
        const binv_kv_cache cache = {dt, e->num_pages, (size_t)c->n_kv_heads, hs, e->kpool[l],
                                     e->vpool[l]};
        if (l == 0)
            CALL("binv_rmsnorm", binv_rmsnorm(e->ctx, e->q, dt, T, d, e->x, 0, d, e->rms_att, 0,
                                              eps, e->xb, 0, d, 0, NULL, NULL));
        else
            CALL("binv_add_rmsnorm",
                 binv_add_rmsnorm(e->ctx, e->q, dt, T, d, e->x, 0, d, e->tmp, 0, d, e->rms_att,
                                  l * d, eps, e->xb, 0, d, 0, NULL, NULL));
        CALL("binv_gemm(qkv)", binv_gemm(e->ctx, e->q, dt, BINV_NO_TRANS, BINV_TRANS, T, qkvw, d,
                                         1.0f, e->xb, 0, d, e->wqkv[l], 0, d, 0.0f, e->qkv, 0,
                                         qkvw, 0, NULL, NULL));
        /* rope(q), rope(k) and the append in one launch (same bits); the K
         * columns of qkv stay unrotated, only the cache's copy is read. */
        CALL("binv_kv_append_rope_q",
             binv_kv_append_rope_q(e->ctx, e->q, &cache, batch, (size_t)c->n_heads, e->qkv, 0,
                                   qkvw, e->qkv, d, qkvw, e->qkv, d + kv, qkvw, theta, 0, NULL,
                                   NULL));
        CALL("binv_attention", binv_attention(e->ctx, e->q, &cache, batch, (size_t)c->n_heads,
                                              scale, e->qkv, 0, qkvw, e->att, 0, d, 0, NULL,
                                              NULL));
        CALL("binv_gemm(wo)", binv_gemm(e->ctx, e->q, dt, BINV_NO_TRANS, BINV_TRANS, T, d, d,
                                        1.0f, e->att, 0, d, e->wo[l], 0, d, 0.0f, e->tmp, 0, d,
                                        0, NULL, NULL));
        CALL("binv_add_rmsnorm", binv_add_rmsnorm(e->ctx, e->q, dt, T, d, e->x, 0, d, e->tmp, 0,
                                                  d, e->rms_ffn, l * d, eps, e->xb, 0, d, 0,
                                                  NULL, NULL));
        CALL("binv_gemm(w1|w3)", binv_gemm(e->ctx, e->q, dt, BINV_NO_TRANS, BINV_TRANS, T, 2 * h,
                                           d, 1.0f, e->xb, 0, d, e->w13[l], 0, d, 0.0f, e->hb, 0,
                                           2 * h, 0, NULL, NULL));
        /* Into its own buffer: binv_swiglu rejects y = gate when up lies
         * interleaved in the same rows (its overlap check compares extents). */
        CALL("binv_swiglu", binv_swiglu(e->ctx, e->q, dt, T, h, e->hb, 0, 2 * h, e->hb, h, 2 * h,
                                        e->act, 0, h, 0, NULL, NULL));
        CALL("binv_gemm(w2)", binv_gemm(e->ctx, e->q, dt, BINV_NO_TRANS, BINV_TRANS, T, d, h,
                                        1.0f, e->act, 0, h, e->w2[l], 0, h, 0.0f, e->tmp, 0, d,
                                        0, NULL, NULL));
    }
    return 0;
fail:
    return -1;
}

/* The final norm over one run of consecutive token rows [row, row + len)
 * into rows [S - len, S) of xf. */
static int final_norm(llm_engine *e, size_t row, size_t len, size_t S) {
    const size_t d = (size_t)e->cfg.dim;
    const int layer = -1; /* for CALL's message */
    CALL("binv_add_rmsnorm(final)",
         binv_add_rmsnorm(e->ctx, e->q, e->dt, len, d, e->x, row * d, d, e->tmp, row * d, d,
                          e->rms_final, 0, 1e-5f, e->xf, (S - len) * d, d, 0, NULL, NULL));
    return 0;
fail:
    return -1;
}

/* Final norm and classifier for the rows that need logits (runs of
 * consecutive such rows go through one call each), read back as f32. */
static int step_logits(llm_engine *e, const llm_work *w, int nwork, float *logits) {
    const llm_config *c = &e->cfg;
    const size_t d = (size_t)c->dim, V = (size_t)c->vocab_size;
    const binv_dtype dt = e->dt;
    const int layer = -1; /* for CALL's message */
    size_t S = 0, r = 0, run_row = 0, run_len = 0;
    for (int i = 0; i < nwork; r += (size_t)w[i].n, i++) {
        if (!w[i].want_logits) continue;
        const size_t first = w[i].want_logits == LLM_LOGITS_ALL ? r : r + (size_t)w[i].n - 1;
        for (size_t row = first; row < r + (size_t)w[i].n; row++, S++) {
            if (run_len && row == run_row + run_len) {
                run_len++;
                continue;
            }
            if (run_len && final_norm(e, run_row, run_len, S)) goto fail;
            run_row = row, run_len = 1;
        }
    }
    if (run_len && final_norm(e, run_row, run_len, S)) goto fail;
    if (S) {
        CALL("binv_gemm(classifier)", binv_gemm(e->ctx, e->q, dt, BINV_NO_TRANS, BINV_TRANS, S, V,
                                                d, 1.0f, e->xf, 0, d, e->wcls, 0, d, 0.0f,
                                                e->logits, 0, V, 0, NULL, NULL));
        if (logits) {
            CLCALL("clEnqueueReadBuffer(logits)",
                   clEnqueueReadBuffer(e->q, e->logits, CL_TRUE, 0, S * V * e->es, e->lbuf, 0,
                                       NULL, NULL));
            for (size_t i = 0; i < S * V; i++) logits[i] = hx_load(dt, e->lbuf, i);
        } else {
            CLCALL("clFinish", clFinish(e->q));
        }
    } else {
        CLCALL("clFinish", clFinish(e->q));
    }
    return 0;
fail:
    return -1;
}

int llm_engine_step(llm_engine *e, const llm_work *w, int nwork, float *logits) {
    const size_t d = (size_t)e->cfg.dim;
    binv_kv_batch *batch = NULL;
    const int layer = -1; /* for CALL's message */
    const size_t T = step_check(e, w, nwork);
    if (!T || step_pages(e, w, nwork)) return -1;
    CALL("binv_kv_batch_create",
         binv_kv_batch_create(e->ctx, e->q, e->num_pages, (size_t)nwork, e->q_lens, e->ctx_lens,
                              e->pt, e->max_pages, &batch));
    if (binv_kv_batch_tokens(batch) != T) {
        seterr(e, "binv_kv_batch_tokens = %zu, expected %zu", binv_kv_batch_tokens(batch), T);
        goto fail;
    }
    /* Embedding rows. */
    size_t r = 0;
    for (int i = 0; i < nwork; i++)
        for (int t = 0; t < w[i].n; t++, r++)
            memcpy(e->stage + r * d * e->es, e->emb + (size_t)w[i].tokens[t] * d * e->es,
                   d * e->es);
    CLCALL("clEnqueueWriteBuffer(x)",
           clEnqueueWriteBuffer(e->q, e->x, CL_FALSE, 0, T * d * e->es, e->stage, 0, NULL, NULL));
    if (step_layers(e, batch, T) || step_logits(e, w, nwork, logits)) goto fail;
    for (int i = 0; i < nwork; i++) e->len[w[i].slot] += w[i].n;
    binv_kv_batch_destroy(batch);
    return 0;
fail:
    clFinish(e->q);
    binv_kv_batch_destroy(batch);
    return -1;
}

/* ---- backend adaptor ----------------------------------------------------------- */

static int be_begin(void *s, int slot, int max_len) { return llm_engine_seq_begin(s, slot, max_len); }
static void be_end(void *s, int slot) { llm_engine_seq_end(s, slot); }
static int be_step(void *s, const llm_work *w, int n, float *l) { return llm_engine_step(s, w, n, l); }
static const char *be_error(void *s) { return llm_engine_error(s); }

llm_backend llm_engine_backend(llm_engine *e) {
    return (llm_backend){e, be_begin, be_end, be_step, be_error};
}
