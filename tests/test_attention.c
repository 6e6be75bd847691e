/* Attention over the paged KV cache, RoPE and SwiGLU.
 *
 * The property: a token's output row is bitwise identical whether it is
 * computed in a one-shot prefill, in any chunked prefill, as a decode step,
 * or with other sequences of any lengths in the same call at any position —
 * on every kernel path.  Plus determinism, accuracy against a double
 * reference, golden hashes, isolation of sequences, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

/* ---- a scenario: a cache and sequences with fixed per-token Q, K, V -------- */

typedef struct seqd {
    size_t n;            /* tokens in the sequence */
    unsigned char *q, *k, *v; /* n x heads*D, n x kvd, n x kvd storage words */
    cl_uint *pages;      /* max_pages entries */
    size_t done;         /* tokens already in the cache */
    unsigned char *out;  /* n x heads*D: output of each token */
} seqd;

typedef struct scen {
    binv_dtype dt;
    size_t heads, kvh, D, es, num_pages, max_pages, nseq;
    binv_kv_cache cache;
    seqd *seqs;
    float scale;
} scen;

/* Uniform values in (-1, 1) rounded to the dtype: scores of moderate size,
 * so that the softmax really mixes many keys and every merge matters. */
static void fill_unit(binv_dtype dt, unsigned char *dst, size_t count, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < count; i++) {
        float v = (float)((int64_t)(hx_rng_next(&s) >> 40) - (1 << 23)) / (float)(1 << 23);
        hx_store(dt, dst, i, v);
    }
}

static void scen_init(const test_env *env, scen *sc, binv_dtype dt, size_t heads, size_t kvh,
                      size_t D, const size_t *lens, size_t nseq, uint64_t seed) {
    memset(sc, 0, sizeof *sc);
    sc->dt = dt;
    sc->heads = heads;
    sc->kvh = kvh;
    sc->D = D;
    sc->es = hx_dtype_size(dt);
    sc->nseq = nseq;
    sc->scale = 1.0f / sqrtf((float)D);
    sc->seqs = calloc(nseq, sizeof *sc->seqs);
    size_t maxn = 0, total_pages = 0;
    for (size_t s = 0; s < nseq; s++) {
        if (lens[s] > maxn) maxn = lens[s];
        total_pages += (lens[s] + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
    }
    sc->max_pages = (maxn + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE + 1;
    sc->num_pages = total_pages + 7; /* spare pages, never used: NaN-filled */
    /* Shuffled pages: sequences get non-contiguous pages in random order. */
    cl_uint *perm = malloc(sc->num_pages * sizeof *perm);
    for (size_t i = 0; i < sc->num_pages; i++) perm[i] = (cl_uint)i;
    uint64_t r = seed + 77;
    for (size_t i = sc->num_pages - 1; i > 0; i--) {
        size_t j = (size_t)(hx_rng_next(&r) % (i + 1));
        cl_uint t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    size_t next = 0, qd = heads * D, kvd = kvh * D;
    for (size_t s = 0; s < nseq; s++) {
        seqd *q = &sc->seqs[s];
        q->n = lens[s];
        q->q = malloc(q->n * qd * sc->es);
        q->k = malloc(q->n * kvd * sc->es);
        q->v = malloc(q->n * kvd * sc->es);
        q->out = calloc(q->n * qd, sc->es);
        q->pages = calloc(sc->max_pages, sizeof(cl_uint));
        fill_unit(dt, q->q, q->n * qd, seed * 131 + s * 3);
        fill_unit(dt, q->k, q->n * kvd, seed * 131 + s * 3 + 1);
        fill_unit(dt, q->v, q->n * kvd, seed * 131 + s * 3 + 2);
        for (size_t p = 0; p < (q->n + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE; p++)
            q->pages[p] = perm[next++];
    }
    free(perm);
    /* Pools start as NaN: reading a slot nobody wrote poisons the output. */
    size_t pool = sc->num_pages * BINV_KV_PAGE_SIZE * kvd;
    unsigned char *nan = malloc(pool * sc->es);
    for (size_t i = 0; i < pool; i++) hx_store(dt, nan, i, NAN);
    sc->cache = (binv_kv_cache){dt, sc->num_pages, kvh, D, test_buffer(env, pool * sc->es, nan),
                                test_buffer(env, pool * sc->es, nan)};
    free(nan);
}

/* Forgets the cache contents (sequences start again from token 0). */
static void scen_reset(const test_env *env, scen *sc) {
    size_t pool = sc->num_pages * BINV_KV_PAGE_SIZE * sc->kvh * sc->D;
    unsigned char *nan = malloc(pool * sc->es);
    for (size_t i = 0; i < pool; i++) hx_store(sc->dt, nan, i, NAN);
    test_write(env, sc->cache.k, pool * sc->es, nan);
    test_write(env, sc->cache.v, pool * sc->es, nan);
    free(nan);
    for (size_t s = 0; s < sc->nseq; s++) {
        sc->seqs[s].done = 0;
        memset(sc->seqs[s].out, 0, sc->seqs[s].n * sc->heads * sc->D * sc->es);
    }
}

static void scen_free(scen *sc) {
    for (size_t s = 0; s < sc->nseq; s++) {
        free(sc->seqs[s].q); free(sc->seqs[s].k); free(sc->seqs[s].v);
        free(sc->seqs[s].out); free(sc->seqs[s].pages);
    }
    free(sc->seqs);
    clReleaseMemObject(sc->cache.k);
    clReleaseMemObject(sc->cache.v);
}

/* One step: sequences ids[i] contribute qlen[i] next tokens, in this order.
 * Q/K/V rows are packed at element offset `pad` with a padded row stride;
 * outputs go to each sequence's out rows. */
static void step(const test_env *env, binv_context *ctx, scen *sc, const size_t *ids,
                 const cl_uint *qlen, size_t nitems, size_t pad) {
    const size_t es = sc->es, qd = sc->heads * sc->D, kvd = sc->kvh * sc->D;
    const size_t ldq = qd + pad, ldk = kvd + pad;
    cl_uint *ql = malloc(nitems * sizeof *ql), *cl = malloc(nitems * sizeof *cl);
    cl_uint *pt = malloc(nitems * sc->max_pages * sizeof *pt);
    size_t T = 0;
    for (size_t i = 0; i < nitems; i++) {
        seqd *s = &sc->seqs[ids[i]];
        ql[i] = qlen[i];
        cl[i] = (cl_uint)(s->done + qlen[i]);
        memcpy(pt + i * sc->max_pages, s->pages, sc->max_pages * sizeof *pt);
        T += qlen[i];
    }
    unsigned char *hq = calloc(pad + T * ldq, es), *hk = calloc(pad + T * ldk, es),
                  *hv = calloc(pad + T * ldk, es);
    size_t t = 0;
    for (size_t i = 0; i < nitems; i++) {
        seqd *s = &sc->seqs[ids[i]];
        for (cl_uint j = 0; j < qlen[i]; j++, t++) {
            memcpy(hq + (pad + t * ldq) * es, s->q + (s->done + j) * qd * es, qd * es);
            memcpy(hk + (pad + t * ldk) * es, s->k + (s->done + j) * kvd * es, kvd * es);
            memcpy(hv + (pad + t * ldk) * es, s->v + (s->done + j) * kvd * es, kvd * es);
        }
    }
    cl_mem bq = test_buffer(env, (pad + T * ldq) * es, hq);
    cl_mem bk = test_buffer(env, (pad + T * ldk) * es, hk);
    cl_mem bv = test_buffer(env, (pad + T * ldk) * es, hv);
    cl_mem bo = test_buffer(env, (pad + T * ldq) * es, NULL);
    binv_kv_batch *b = NULL;
    binv_status st = binv_kv_batch_create(ctx, env->queue, sc->num_pages, nitems, ql, cl, pt,
                                          sc->max_pages, &b);
    if (st == BINV_SUCCESS)
        st = binv_kv_append(ctx, env->queue, &sc->cache, b, bk, pad, ldk, bv, pad, ldk, 0, NULL,
                            NULL);
    if (st == BINV_SUCCESS)
        st = binv_attention(ctx, env->queue, &sc->cache, b, sc->heads, sc->scale, bq, pad, ldq, bo,
                            pad, ldq, 0, NULL, NULL);
    if (st != BINV_SUCCESS) fprintf(stderr, "step: %s\n", binv_context_last_error(ctx));
    assert_int_equal(st, BINV_SUCCESS);
    test_read(env, bo, (pad + T * ldq) * es, hq);
    t = 0;
    for (size_t i = 0; i < nitems; i++) {
        seqd *s = &sc->seqs[ids[i]];
        for (cl_uint j = 0; j < qlen[i]; j++, t++)
            memcpy(s->out + (s->done + j) * qd * es, hq + (pad + t * ldq) * es, qd * es);
        s->done += qlen[i];
    }
    binv_kv_batch_destroy(b);
    clReleaseMemObject(bq); clReleaseMemObject(bk); clReleaseMemObject(bv); clReleaseMemObject(bo);
    free(hq); free(hk); free(hv); free(ql); free(cl); free(pt);
}

/* Every sequence alone, one-shot prefill: the reference bits.  Returns a
 * copy of each sequence's outputs. */
static unsigned char **one_shot(const test_env *env, binv_context *ctx, scen *sc) {
    scen_reset(env, sc);
    unsigned char **ref = calloc(sc->nseq, sizeof *ref);
    for (size_t s = 0; s < sc->nseq; s++) {
        cl_uint q = (cl_uint)sc->seqs[s].n;
        step(env, ctx, sc, &s, &q, 1, 0);
        size_t bytes = sc->seqs[s].n * sc->heads * sc->D * sc->es;
        ref[s] = malloc(bytes);
        memcpy(ref[s], sc->seqs[s].out, bytes);
    }
    return ref;
}

static void free_ref(scen *sc, unsigned char **ref) {
    for (size_t s = 0; s < sc->nseq; s++) free(ref[s]);
    free(ref);
}

/* Compares every token of every sequence with the reference. */
static void expect_same(const scen *sc, unsigned char **ref, const char *what) {
    const size_t row = sc->heads * sc->D * sc->es;
    for (size_t s = 0; s < sc->nseq; s++)
        for (size_t t = 0; t < sc->seqs[s].n; t++)
            if (memcmp(sc->seqs[s].out + t * row, ref[s] + t * row, row) != 0)
                fail_msg("%s (%s, D=%zu): sequence %zu token %zu differs from its one-shot "
                         "prefill alone", what, hx_dtype_name(sc->dt), sc->D, s, t);
}

/* Chunked prefill of every sequence alone, chunk size c (0: random). */
static void run_chunked(const test_env *env, binv_context *ctx, scen *sc, size_t c, uint64_t seed) {
    scen_reset(env, sc);
    uint64_t r = seed;
    for (size_t s = 0; s < sc->nseq; s++)
        while (sc->seqs[s].done < sc->seqs[s].n) {
            size_t left = sc->seqs[s].n - sc->seqs[s].done;
            size_t k = c ? c : 1 + (size_t)(hx_rng_next(&r) % 40);
            cl_uint q = (cl_uint)(k < left ? k : left);
            step(env, ctx, sc, &s, &q, 1, 3);
        }
}

/* All sequences progress together: each step takes a random subset, in a
 * random order, with random chunk sizes (some decode-sized). */
static void run_mixed(const test_env *env, binv_context *ctx, scen *sc, uint64_t seed) {
    scen_reset(env, sc);
    uint64_t r = seed;
    size_t *ids = malloc(sc->nseq * sizeof *ids);
    cl_uint *ql = malloc(sc->nseq * sizeof *ql);
    for (;;) {
        size_t n = 0;
        for (size_t s = 0; s < sc->nseq; s++) {
            size_t left = sc->seqs[s].n - sc->seqs[s].done;
            if (!left || hx_rng_next(&r) % 4 == 0) continue;
            size_t k = hx_rng_next(&r) % 3 == 0 ? 1 : 1 + (size_t)(hx_rng_next(&r) % 90);
            ids[n] = s;
            ql[n++] = (cl_uint)(k < left ? k : left);
        }
        if (n == 0) {
            int any = 0;
            for (size_t s = 0; s < sc->nseq; s++) any |= sc->seqs[s].done < sc->seqs[s].n;
            if (!any) break;
            continue;
        }
        for (size_t i = n - 1; i > 0; i--) { /* random order inside the step */
            size_t j = (size_t)(hx_rng_next(&r) % (i + 1));
            size_t a = ids[i]; ids[i] = ids[j]; ids[j] = a;
            cl_uint b = ql[i]; ql[i] = ql[j]; ql[j] = b;
        }
        step(env, ctx, sc, ids, ql, n, (size_t)(hx_rng_next(&r) % 5));
    }
    free(ids);
    free(ql);
}

/* ---- the invariance property ------------------------------------------------ */

static void check_invariance(void **state, binv_dtype dt, size_t heads, size_t kvh, size_t D,
                             const size_t *lens, size_t nseq, const size_t *chunks, size_t nchunks) {
    test_env *env = *state;
    scen sc;
    scen_init(env, &sc, dt, heads, kvh, D, lens, nseq, 11 + D + (size_t)dt);
    unsigned char **ref = one_shot(env, env->ctx, &sc);
    binv_context *ctxs[3] = {env->ctx, env->attn_forced[0], env->attn_forced[1]};
    const char *names[3] = {"auto", "fused", "split"};
    char what[96];
    for (int ci = 0; ci < 3; ci++) {
        if (ci) {
            for (size_t s = 0; s < nseq; s++) sc.seqs[s].done = 0;
            scen_reset(env, &sc);
            for (size_t s = 0; s < nseq; s++) {
                cl_uint q = (cl_uint)sc.seqs[s].n;
                step(env, ctxs[ci], &sc, &s, &q, 1, 1);
            }
            snprintf(what, sizeof what, "one-shot prefill, %s path", names[ci]);
            expect_same(&sc, ref, what);
        }
        for (size_t c = 0; c < nchunks; c++) {
            run_chunked(env, ctxs[ci], &sc, chunks[c], 5 + c);
            snprintf(what, sizeof what, "chunked prefill (chunk %zu), %s path", chunks[c],
                     names[ci]);
            expect_same(&sc, ref, what);
        }
        run_mixed(env, ctxs[ci], &sc, 99 + (uint64_t)ci);
        snprintf(what, sizeof what, "mixed batches, %s path", names[ci]);
        expect_same(&sc, ref, what);
    }
    free_ref(&sc, ref);
    scen_free(&sc);
}

static void test_attention_invariance(void **state) {
    /* Contexts 1, page_size +- 1, across chunk boundaries (256, 512). */
    static const size_t lens[] = {600, 1, 15, 17, 300, 64};
    static const size_t chunks[] = {1, 3, 16, 17, 64, 0};
    check_invariance(state, BINV_DTYPE_F32, 4, 2, 64, lens, 6, chunks, 6);
    /* MHA, odd head_dim; GQA 4:1 with head_dim 128; 16-bit storage. */
    static const size_t lens2[] = {290, 33, 5};
    static const size_t chunks2[] = {7, 0};
    check_invariance(state, BINV_DTYPE_F32, 3, 3, 5, lens2, 3, chunks2, 2);
    check_invariance(state, BINV_DTYPE_BF16, 8, 2, 128, lens2, 3, chunks2, 2);
    check_invariance(state, BINV_DTYPE_F16, 4, 1, 32, lens2, 3, chunks2, 2);
}

/* A long context: decode steps after a prefill of several thousand tokens
 * give the bits of the one-shot prefill, alone and next to other sequences. */
static void test_attention_long_context(void **state) {
    test_env *env = *state;
    static const size_t lens[] = {3000, 40};
    scen sc;
    scen_init(env, &sc, BINV_DTYPE_F32, 2, 1, 64, lens, 2, 3);
    unsigned char **ref = one_shot(env, env->ctx, &sc);
    binv_context *ctxs[2] = {env->attn_forced[0], env->attn_forced[1]};
    for (int ci = 0; ci < 2; ci++) {
        scen_reset(env, &sc);
        size_t s0 = 0, s1 = 1;
        cl_uint q = 2990;
        step(env, ctxs[ci], &sc, &s0, &q, 1, 0);
        while (sc.seqs[0].done < 3000) { /* decode, with the other sequence alongside */
            size_t ids[2] = {s1, s0};
            cl_uint ql[2] = {4, 1};
            if (sc.seqs[1].done < 40) step(env, ctxs[ci], &sc, ids, ql, 2, 2);
            else step(env, ctxs[ci], &sc, &s0, ql + 1, 1, 2);
        }
        while (sc.seqs[1].done < 40) {
            cl_uint one = 1;
            step(env, ctxs[ci], &sc, &s1, &one, 1, 0);
        }
        expect_same(&sc, ref, ci ? "decode after 2990 tokens (split)" : "decode after 2990 tokens (fused)");
    }
    free_ref(&sc, ref);
    scen_free(&sc);
}

static void test_attention_determinism(void **state) {
    test_env *env = *state;
    static const size_t lens[] = {700, 9};
    scen sc;
    scen_init(env, &sc, BINV_DTYPE_F32, 4, 2, 64, lens, 2, 8);
    unsigned char **ref = one_shot(env, env->attn_forced[1], &sc);
    for (int rep = 0; rep < 5; rep++) {
        free_ref(&sc, one_shot(env, env->attn_forced[1], &sc));
        expect_same(&sc, ref, "repeat of the same call");
    }
    free_ref(&sc, ref);
    scen_free(&sc);
}

/* ---- accuracy ------------------------------------------------------------------ */

/* |o - ref| <= tol * max|v| per element, with ref the double-precision
 * softmax(scale q.k) v over the stored (rounded) inputs.  The outputs are
 * convex combinations of V, so the error is relative to max|v|: f32 sums of
 * <= 3000 terms and the library exp (< 1 ulp) stay below 2^-17; 16-bit
 * storage adds the output's rounding (2^-8 bf16, 2^-11 f16). */
static void check_accuracy(const test_env *env, binv_context *ctx, binv_dtype dt, const size_t *lens,
                           size_t nseq, double tol, const char *what) {
    scen sc;
    scen_init(env, &sc, dt, 4, 2, 64, lens, nseq, 21);
    unsigned char **out = one_shot(env, ctx, &sc);
    const size_t D = sc.D, qd = sc.heads * D, kvd = sc.kvh * D, G = sc.heads / sc.kvh;
    double worst = 0;
    double *sc_buf = malloc(3000 * sizeof(double));
    for (size_t s = 0; s < nseq; s++) {
        seqd *q = &sc.seqs[s];
        for (size_t t = 0; t < q->n; t += (q->n > 500 ? 37 : 1))
            for (size_t h = 0; h < sc.heads; h++) {
                double ref[256];
                hx_attention_ref(dt, D, (double)sc.scale, q->q, t * qd + h * D, q->k, q->v,
                                 (h / G) * D, kvd, t + 1, ref, sc_buf);
                for (size_t d = 0; d < D; d++) {
                    double err = fabs((double)hx_load(dt, out[s], t * qd + h * D + d) - ref[d]);
                    if (err > worst) worst = err;
                }
            }
    }
    printf("# attention %s %s: max |o - ref| = %.3g (max|v| <= 1, bound %.3g)\n", what,
           hx_dtype_name(dt), worst, tol);
    if (!(worst <= tol)) fail_msg("attention %s %s: error %.3g > %.3g", what, hx_dtype_name(dt), worst, tol);
    free(sc_buf);
    free_ref(&sc, out);
    scen_free(&sc);
}

static void test_attention_accuracy(void **state) {
    test_env *env = *state;
    static const size_t lens[] = {1200, 17};
    check_accuracy(env, env->attn_forced[1], BINV_DTYPE_F32, lens, 2, ldexp(1, -17), "split");
    check_accuracy(env, env->attn_forced[0], BINV_DTYPE_F32, lens, 2, ldexp(1, -17), "fused");
    check_accuracy(env, env->adaptive, BINV_DTYPE_F32, lens, 2, ldexp(1, -17), "adaptive");
    check_accuracy(env, env->ctx, BINV_DTYPE_BF16, lens, 2, ldexp(1, -8) + ldexp(1, -17), "auto");
    check_accuracy(env, env->ctx, BINV_DTYPE_F16, lens, 2, ldexp(1, -11) + ldexp(1, -17), "auto");
}

/* ---- isolation and special values ------------------------------------------------ */

/* A NaN in one sequence's key poisons that sequence's later tokens only. */
static void test_attention_isolation(void **state) {
    test_env *env = *state;
    static const size_t lens[] = {300, 300};
    scen sc;
    scen_init(env, &sc, BINV_DTYPE_F32, 2, 2, 16, lens, 2, 4);
    unsigned char **ref = one_shot(env, env->ctx, &sc);
    hx_store(BINV_DTYPE_F32, sc.seqs[0].k, 100 * 2 * 16 + 3, NAN); /* token 100, head 0 */
    scen_reset(env, &sc);
    size_t ids[2] = {0, 1};
    cl_uint ql[2] = {300, 300};
    step(env, env->ctx, &sc, ids, ql, 2, 0);
    const size_t row = 2 * 16;
    for (size_t t = 0; t < 300; t++) {
        const float *o0 = (const float *)sc.seqs[0].out + t * row;
        for (size_t i = 0; i < 16; i++) /* head 0 of sequence 0 */
            assert_true(t < 100 ? !isnan(o0[i]) : isnan(o0[i]));
        assert_memory_equal(sc.seqs[1].out + t * row * 4, ref[1] + t * row * 4, row * 4);
        assert_memory_equal(sc.seqs[0].out + (t * row + 16) * 4, ref[0] + (t * row + 16) * 4, 16 * 4);
    }
    free_ref(&sc, ref);
    scen_free(&sc);
}

/* ---- portable bits ------------------------------------------------------------------ */

static void test_attention_golden(void **state) {
    test_env *env = *state;
    int bad = 0;
    static const size_t lens[] = {520, 3};
    for (int d = 0; d < 3; d++) {
        scen sc;
        scen_init(env, &sc, DTYPES[d], 4, 2, 64, lens, 2, 2024);
        unsigned char **out = one_shot(env, env->ctx, &sc);
        binv_sha256 h;
        unsigned char dig[32];
        char hex[65], name[64];
        binv_sha256_init(&h);
        for (size_t s = 0; s < 2; s++) binv_sha256_update(&h, out[s], lens[s] * 4 * 64 * sc.es);
        binv_sha256_final(&h, dig);
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dig[i]);
        snprintf(name, sizeof name, "attention_%s_h4kv2d64_520+3", hx_dtype_name(DTYPES[d]));
        if (!test_golden_check("attention.txt", name, hex)) bad++;
        free_ref(&sc, out);
        scen_free(&sc);
    }
    if (bad) fail_msg("%d golden hashes differ on '%s'", bad, env->device_name);
}

/* ---- RoPE and SwiGLU ------------------------------------------------------------------ */

static void test_rope(void **state) {
    test_env *env = *state;
    enum { T = 64, H = 3, HD = 128 };
    const size_t ld = H * HD + 2, n = T * ld + 1;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    cl_uint pos[T + 1];
    uint64_t r = 3;
    for (size_t i = 0; i < n; i++) x[i] = (float)((int64_t)(hx_rng_next(&r) >> 40) - (1 << 23)) / (float)(1 << 23);
    pos[0] = 0;
    for (int t = 0; t < T; t++) pos[t + 1] = t < 8 ? (cl_uint)t : (cl_uint)(hx_rng_next(&r) % 1000000);
    cl_mem bx = test_buffer(env, n * 4, x), bp = test_buffer(env, sizeof pos, pos);
    binv_status st = binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 1, ld, bp, 1,
                               10000.0f, 0, NULL, NULL);
    assert_int_equal(st, BINV_SUCCESS);
    test_read(env, bx, n * 4, y);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < HD / 2; i++) {
                size_t b = 1 + t * ld + h * HD + 2 * i;
                /* The library's angle is the float (float)pos * f, with f
                 * the float nearest the frequency; the reference takes that
                 * angle exactly: what is checked is sin/cos and the rotation. */
                float f = (float)pow(10000.0, -(double)(2 * i) / HD);
                double a = (double)((float)pos[t + 1] * f);
                double e0, e1;
                hx_rope_ref(x[b], x[b + 1], a, &e0, &e1);
                double tol = 6e-7;
                double err = fmax(fabs(y[b] - e0), fabs(y[b + 1] - e1)) / tol;
                if (err > worst) worst = err;
            }
    printf("# rope: max error %.3f of its bound (6e-7 absolute, |x| < 1, positions < 10^6)\n", worst);
    assert_true(worst <= 1.0);
    /* untouched padding */
    assert_memory_equal(&y[0], &x[0], 4);
    /* Each token's rotation is its own: token t of a batch of T equals the
     * token alone.  And the bits are portable: golden hash. */
    cl_mem one = test_buffer(env, H * HD * 4, x + 1 + 9 * ld);
    cl_mem bp1 = test_buffer(env, 4, &pos[10]);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, 1, H, HD, one, 0, H * HD, bp1, 0,
                               10000.0f, 0, NULL, NULL), BINV_SUCCESS);
    float alone[H * HD];
    test_read(env, one, sizeof alone, alone);
    assert_memory_equal(alone, y + 1 + 9 * ld, sizeof alone);
    char hex[65];
    test_sha256_hex(y, n * 4, hex);
    if (!test_golden_check("attention.txt", "rope_f32_64x3x128", hex))
        fail_msg("rope golden hash differs on '%s'", env->device_name);
    /* bad input: odd head_dim, theta <= 1, positions too small; x untouched */
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, 7, bx, 0, ld, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, ld, bp, 0, 1.0f, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, ld, bp, 2, 1e4f, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, 10, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    assert_int_equal(binv_rope(env->ctx, env->queue, (binv_dtype)9, T, H, HD, bx, 0, ld, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_UNSUPPORTED_DTYPE);
    assert_true(strlen(binv_context_last_error(env->ctx)) > 0);
    float *z = malloc(n * 4);
    test_read(env, bx, n * 4, z);
    assert_memory_equal(z, y, n * 4);
    clReleaseMemObject(bx); clReleaseMemObject(bp); clReleaseMemObject(one); clReleaseMemObject(bp1);
    free(x); free(y); free(z);
}

static void test_swiglu(void **state) {
    test_env *env = *state;
    enum { R = 5, C = 1000 };
    int bad = 0;
    for (int d = 0; d < 3; d++) {
        binv_dtype dt = DTYPES[d];
        size_t es = hx_dtype_size(dt);
        unsigned char *g = malloc(R * C * es), *u = malloc(R * C * es), *y = malloc(R * C * es);
        hx_fill_wide(dt, g, R * C, 1);
        hx_fill_wide(dt, u, R * C, 2);
        cl_mem bg = test_buffer(env, R * C * es, g), bu = test_buffer(env, R * C * es, u);
        cl_mem by = test_buffer(env, R * C * es, NULL);
        assert_int_equal(hx_swiglu_binv(env->ctx, env->queue, dt, R, C, bg, bu, by, C, NULL), BINV_SUCCESS);
        test_read(env, by, R * C * es, y);
        double worst = 0;
        for (size_t i = 0; i < R * C; i++) {
            double gv = hx_load(dt, g, i), uv = hx_load(dt, u, i);
            double ref = hx_swiglu_ref(gv, uv);
            const int mant = dt == BINV_DTYPE_F32 ? 23 : dt == BINV_DTYPE_F16 ? 10 : 7;
            const double tiny = dt == BINV_DTYPE_F16 ? 0x1p-24 : dt == BINV_DTYPE_F32 ? 0x1p-149 : 0x1p-133;
            if (fabs(ref) > (dt == BINV_DTYPE_F16 ? 65504.0 : 3e38) || ref == 0) continue;
            /* Below the normal range the f32 intermediates silu(g) and
             * exp(-|g|) are subnormal or 0: the error is then absolute,
             * <= 2^-126 |u|, not relative. */
            double ulp = fmax(fmax(ldexp(1, ilogb(ref) - mant), tiny), 0x1p-126 * fabs(uv));
            double e = fabs(hx_load(dt, y, i) - ref) / ulp;
            if (e > worst) worst = e;
        }
        printf("# swiglu %s: max error %.2f ulp\n", hx_dtype_name(dt), worst);
        assert_true(worst <= 4.0);
        char hex[65], name[48];
        test_sha256_hex(y, R * C * es, hex);
        snprintf(name, sizeof name, "swiglu_%s_5x1000", hx_dtype_name(dt));
        if (!test_golden_check("attention.txt", name, hex)) bad++;
        /* in place into gate gives the same bits */
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bg, 0, C, bu, 0, C, bg, 0, C, 0, NULL, NULL), BINV_SUCCESS);
        unsigned char *y2 = malloc(R * C * es);
        test_read(env, bg, R * C * es, y2);
        assert_memory_equal(y, y2, R * C * es);
        /* y = gate in place with up the other half of the same rows
         * ([gate | up] rows of 2C): allowed, same bits */
        {
            unsigned char *gu = malloc(2 * R * C * es), *o2 = malloc(2 * R * C * es);
            for (size_t r = 0; r < R; r++) {
                memcpy(gu + 2 * r * C * es, g + r * C * es, C * es);
                memcpy(gu + (2 * r + 1) * C * es, u + r * C * es, C * es);
            }
            cl_mem bgu = test_buffer(env, 2 * R * C * es, gu);
            assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bgu, 0, 2 * C, bgu, C, 2 * C, bgu, 0, 2 * C, 0, NULL, NULL), BINV_SUCCESS);
            test_read(env, bgu, 2 * R * C * es, o2);
            for (size_t r = 0; r < R; r++)
                assert_memory_equal(o2 + 2 * r * C * es, y + r * C * es, C * es);
            /* y = up's half while gate is read: a partial overlap */
            assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bgu, 0, 2 * C, bgu, C, 2 * C, bgu, 1, 2 * C, 0, NULL, NULL), BINV_ERROR_ALIASING);
            clReleaseMemObject(bgu);
            free(gu); free(o2);
        }
        /* partial overlap, bad ld: errors, nothing written */
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C - 1, bu, 0, C, bu, 0, C, bu, 1, C, 0, NULL, NULL), BINV_ERROR_ALIASING);
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bu, 0, C - 1, bu, 0, C, by, 0, C, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R + 1, C, bu, 0, C, bu, 0, C, by, 0, C, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
        test_read(env, bu, R * C * es, y2);
        assert_memory_equal(u, y2, R * C * es);
        clReleaseMemObject(bg); clReleaseMemObject(bu); clReleaseMemObject(by);
        free(g); free(u); free(y); free(y2);
    }
    if (bad) fail_msg("%d swiglu golden hashes differ on '%s'", bad, env->device_name);
}

/* ---- bad input ---------------------------------------------------------------------- */

static void test_attention_bad_input(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_command_queue q = env->queue;
    static const size_t lens[] = {20, 5};
    scen sc;
    scen_init(env, &sc, BINV_DTYPE_F32, 4, 2, 8, lens, 2, 1);
    cl_uint ql[2] = {20, 5}, cl[2] = {20, 5};
    cl_uint *pt = calloc(2 * sc.max_pages, sizeof *pt);
    memcpy(pt, sc.seqs[0].pages, sc.max_pages * 4);
    memcpy(pt + sc.max_pages, sc.seqs[1].pages, sc.max_pages * 4);
    binv_kv_batch *b = NULL;
    /* batch metadata */
    pt[1] = (cl_uint)sc.num_pages; /* page index past the pool */
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, ql, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_VALUE);
    assert_non_null(strstr(binv_context_last_error(c), "past the pool"));
    assert_null(b);
    pt[1] = sc.seqs[0].pages[1];
    cl_uint bigc[2] = {20, (cl_uint)(sc.max_pages * BINV_KV_PAGE_SIZE + 1)}; /* length past the table */
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, ql, bigc, pt, sc.max_pages, &b), BINV_ERROR_INVALID_VALUE);
    assert_non_null(strstr(binv_context_last_error(c), "past its page table"));
    cl_uint zq[2] = {20, 0};
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, zq, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_VALUE);
    cl_uint bq[2] = {21, 5};
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, bq, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_VALUE);
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, NULL, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_kv_batch_create(c, NULL, sc.num_pages, 2, ql, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, ql, cl, pt, sc.max_pages, NULL), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_kv_batch_create(NULL, q, sc.num_pages, 2, ql, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_ARGUMENT);
    pt[sc.max_pages] = pt[0]; /* two new tokens into one slot */
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, ql, cl, pt, sc.max_pages, &b), BINV_ERROR_INVALID_VALUE);
    pt[sc.max_pages] = sc.seqs[1].pages[0];
    assert_int_equal(binv_kv_batch_create(c, q, sc.num_pages, 2, ql, cl, pt, sc.max_pages, &b), BINV_SUCCESS);
    assert_int_equal(binv_kv_batch_tokens(b), 25);
    assert_non_null(binv_kv_batch_positions(b));

    const size_t qd = 32, kvd = 16;
    float *sentinel = malloc(25 * qd * 4);
    for (size_t i = 0; i < 25 * qd; i++) sentinel[i] = 12345.0f;
    cl_mem bqm = test_buffer(env, 25 * qd * 4, sentinel), bo = test_buffer(env, 25 * qd * 4, sentinel);
    cl_mem bk = test_buffer(env, 25 * kvd * 4, sentinel), small = test_buffer(env, 24 * qd * 4, sentinel);
    binv_kv_cache cache = sc.cache, bad = sc.cache;
    /* attention */
    assert_int_equal(binv_attention(c, q, &cache, b, 3, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION); /* heads % kv_heads */
    assert_non_null(strstr(binv_context_last_error(c), "multiple of kv_heads"));
    assert_int_equal(binv_attention(c, q, &cache, b, 4, NAN, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE);
    assert_int_equal(binv_attention(c, q, &cache, b, 4, 0.5f, NULL, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_attention(c, q, &cache, NULL, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_attention(c, q, &cache, b, 4, 0.5f, bqm, 0, qd - 1, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    assert_int_equal(binv_attention(c, q, &cache, b, 4, 0.5f, small, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    assert_int_equal(binv_attention(c, q, &cache, b, 4, 0.5f, bqm, 0, qd, bqm, 0, qd, 0, NULL, NULL), BINV_ERROR_ALIASING);
    assert_int_equal(binv_attention(c, q, &cache, b, 4, 0.5f, bqm, 0, qd, cache.k, 0, qd, 0, NULL, NULL), BINV_ERROR_ALIASING);
    assert_int_equal(binv_attention(env->adaptive, q, &cache, b, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_CONTEXT_MISMATCH);
    bad.dtype = (binv_dtype)0;
    assert_int_equal(binv_attention(c, q, &bad, b, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_UNSUPPORTED_DTYPE);
    bad = cache; bad.head_dim = 300;
    assert_int_equal(binv_attention(c, q, &bad, b, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION);
    bad = cache; bad.num_pages = sc.num_pages - 1;
    assert_int_equal(binv_attention(c, q, &bad, b, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE);
    bad = cache; bad.num_pages = sc.num_pages * 2; /* pools too small for the stated pages */
    assert_int_equal(binv_attention(c, q, &bad, b, 4, 0.5f, bqm, 0, qd, bo, 0, qd, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    /* kv_append */
    assert_int_equal(binv_kv_append(c, q, &cache, b, small, 0, kvd * 2, bk, 0, kvd, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    assert_int_equal(binv_kv_append(c, q, &cache, b, bk, 0, kvd - 1, bk, 0, kvd, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    assert_int_equal(binv_kv_append(c, q, &cache, b, cache.k, 0, kvd, bk, 0, kvd, 0, NULL, NULL), BINV_ERROR_ALIASING);
    cl_event ev = (cl_event)1;
    assert_int_equal(binv_kv_append(c, q, &cache, b, bk, 0, kvd, bk, 0, kvd, 1, NULL, &ev), BINV_ERROR_INVALID_ARGUMENT);
    assert_null(ev);
    float *now = malloc(25 * qd * 4);
    test_read(env, bo, 25 * qd * 4, now);
    assert_memory_equal(now, sentinel, 25 * qd * 4); /* nothing written */
    /* The pools are untouched by the failed appends: still NaN everywhere. */
    size_t pool = sc.num_pages * BINV_KV_PAGE_SIZE * kvd;
    float *pk = malloc(pool * 4);
    test_read(env, cache.k, pool * 4, pk);
    for (size_t i = 0; i < pool; i++) assert_true(isnan(pk[i]));
    binv_kv_batch_destroy(b);
    binv_kv_batch_destroy(NULL);
    clReleaseMemObject(bqm); clReleaseMemObject(bo); clReleaseMemObject(bk); clReleaseMemObject(small);
    free(sentinel); free(now); free(pk); free(pt);
    scen_free(&sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_bad_input),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_attention_golden),
        cmocka_unit_test(test_attention_isolation),
        cmocka_unit_test(test_attention_determinism),
        cmocka_unit_test(test_attention_accuracy),
        cmocka_unit_test(test_attention_invariance),
        cmocka_unit_test(test_attention_long_context),
    };
    return cmocka_run_group_tests_name("attention", tests, test_env_setup, test_env_teardown);
}
