/* binv-llm (tools/llm): checkpoint loader (well-formed and malformed files),
 * Philox and the sampler, the engine against the CPU reference, batch
 * invariance of a request's logits across batch compositions and prefill
 * chunk sizes, the paged KV cache's allocator, the serving loop, and -- when
 * the real model is present -- stories260K end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "llm.h"
#include "harness.h"

#ifndef BINV_LLM_MODEL
#define BINV_LLM_MODEL "../shared/models/stories260K.bin"
#endif

/* The tiny synthetic checkpoint of most tests: 2 layers, 4 heads of 8 over 2
 * kv heads, separate classifier. */
static const llm_config TINY = {32, 48, 2, 4, 2, 50, 64, 0};
static const char *TINY_PATH = "llm_tiny.bin";

static const char *model_path(void) {
    const char *p = getenv("BINV_LLM_MODEL");
    return p && *p ? p : BINV_LLM_MODEL;
}

/* Loads stories260K, or skips with a message when it is absent. */
static int load_stories(llm_model *m) {
    FILE *f = fopen(model_path(), "rb");
    if (!f) {
        printf("# SKIPPED: %s not found (the real model is optional; set BINV_LLM_MODEL)\n",
               model_path());
        return -1;
    }
    fclose(f);
    char err[1024];
    if (llm_model_load(model_path(), m, err, sizeof err)) fail_msg("%s", err);
    return 0;
}

static void load_tiny(llm_model *m) {
    char err[1024];
    if (llm_synthetic_write(TINY_PATH, &TINY, 7, err, sizeof err)) fail_msg("%s", err);
    if (llm_model_load(TINY_PATH, m, err, sizeof err)) fail_msg("%s", err);
}

static llm_engine *engine(const test_env *env, binv_context *ctx, const llm_model *m,
                          binv_dtype dt, int slots, int tokens) {
    const llm_engine_opts o = {dt, slots, tokens, 0, 0, 99};
    char err[2048];
    llm_engine *e = llm_engine_create(ctx, env->context, env->queue, m, &o, err, sizeof err);
    if (!e) fail_msg("engine: %s", err);
    return e;
}

static int argmax(const float *l, int n) {
    const llm_sampler g = {0, 0, 1};
    return llm_sample(&g, l, n, 0, 0, NULL);
}

/* ---- Philox and sampling ------------------------------------------------------ */

static void test_philox_known_answers(void **state) {
    (void)state;
    /* Random123's kat_vectors for philox4x32 with 10 rounds. */
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {~0u, ~0u, ~0u, ~0u},
                                       {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
    static const uint32_t key[3][2] = {{0, 0}, {~0u, ~0u}, {0xa4093822, 0x299f31d0}};
    static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                        {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                        {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int i = 0; i < 3; i++) {
        uint32_t o[4];
        llm_philox4x32_10(ctr[i], key[i], o);
        for (int j = 0; j < 4; j++) assert_int_equal(o[j], want[i][j]);
    }
    for (uint64_t p = 0; p < 1000; p++) {
        const double u = llm_uniform(5, p);
        assert_true(u >= 0 && u < 1);
        assert_true(u == llm_uniform(5, p));
    }
    assert_true(llm_uniform(5, 0) != llm_uniform(6, 0));
}

static void test_sampler(void **state) {
    (void)state;
    const float ties[5] = {1, 3, -2, 3, 0};
    const llm_sampler greedy = {0, 0, 1}, k1 = {1.0f, 1, 1}, tiny_p = {1.0f, 0, 1e-6f};
    assert_int_equal(llm_sample(&greedy, ties, 5, 1, 1, NULL), 1); /* first index of the max */
    assert_int_equal(llm_sample(&k1, ties, 5, 1, 1, NULL), 1);
    for (uint64_t p = 0; p < 50; p++) assert_int_equal(llm_sample(&tiny_p, ties, 5, 3, p, NULL), 1);
    /* Frequencies of temperature-1 sampling follow softmax. */
    const float l[4] = {0.0f, (float)log(2.0), (float)log(3.0), (float)log(4.0)}; /* 1:2:3:4 */
    const llm_sampler t1 = {1.0f, 0, 1.0f}, top2 = {1.0f, 2, 1.0f}, p05 = {1.0f, 0, 0.5f};
    int cnt[4] = {0}, cnt2[4] = {0}, cnt3[4] = {0};
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        cnt[llm_sample(&t1, l, 4, 11, (uint64_t)i, NULL)]++;
        cnt2[llm_sample(&top2, l, 4, 11, (uint64_t)i, NULL)]++;
        cnt3[llm_sample(&p05, l, 4, 11, (uint64_t)i, NULL)]++;
    }
    for (int i = 0; i < 4; i++) assert_true(fabs(cnt[i] / (double)n - (i + 1) / 10.0) < 0.015);
    assert_int_equal(cnt2[0] + cnt2[1], 0); /* top-2: tokens 2 and 3, 3:4 */
    assert_true(fabs(cnt2[3] / (double)n - 4.0 / 7.0) < 0.015);
    /* top-p 0.5: the nucleus is {3 (0.4), 2 (0.3)}, renormalised 4:3. */
    assert_int_equal(cnt3[0] + cnt3[1], 0);
    assert_true(fabs(cnt3[3] / (double)n - 4.0 / 7.0) < 0.015);
    /* The sample is a function of (seed, position, logits) only. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(llm_sample(&t1, l, 4, 99, (uint64_t)i, NULL),
                         llm_sample(&t1, l, 4, 99, (uint64_t)i, NULL));
    int ids[8];
    assert_int_equal(llm_parse_ids("1,403, 7", ids, 8), 3);
    assert_int_equal(ids[1], 403);
    assert_int_equal(llm_parse_ids("1,x", ids, 8), -1);
    assert_int_equal(llm_parse_ids("-4", ids, 8), -1);
}

/* ---- checkpoints ---------------------------------------------------------------- */

static void test_checkpoint_roundtrip(void **state) {
    (void)state;
    char err[1024];
    for (int shared = 0; shared < 2; shared++) {
        llm_config c = TINY;
        c.shared_classifier = shared;
        assert_int_equal(llm_synthetic_write("llm_rt.bin", &c, 3, err, sizeof err), 0);
        FILE *f = fopen("llm_rt.bin", "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        assert_int_equal((uint64_t)ftell(f), llm_checkpoint_bytes(&c));
        int32_t hdr[7];
        fseek(f, 0, SEEK_SET);
        assert_int_equal(fread(hdr, 4, 7, f), 7);
        assert_int_equal(hdr[5], shared ? c.vocab_size : -c.vocab_size);
        /* the last float of the file */
        float last;
        fseek(f, -4, SEEK_END);
        assert_int_equal(fread(&last, 4, 1, f), 1);
        fclose(f);
        llm_model m;
        assert_int_equal(llm_model_load("llm_rt.bin", &m, err, sizeof err), 0);
        assert_memory_equal(&m.cfg, &c, sizeof c);
        if (shared) assert_ptr_equal(m.wcls, m.tok_emb);
        else assert_true(m.wcls[(size_t)c.vocab_size * c.dim - 1] == last);
        /* norm weights near 1, matrices zero-mean */
        assert_true(fabs(m.rms_final[0] - 1.0) < 0.5);
        assert_true(m.wq[0] != 0 && fabs(m.wq[0]) < 2);
        llm_model_free(&m);
        remove("llm_rt.bin");
    }
}

static void write_raw(const char *path, const int32_t *hdr, int nhdr, const float *data,
                      size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (nhdr) assert_int_equal(fwrite(hdr, 4, (size_t)nhdr, f), (size_t)nhdr);
    if (n) assert_int_equal(fwrite(data, 4, n, f), n);
    fclose(f);
}

static void expect_reject(const char *what, const char *needle) {
    llm_model m;
    char err[1024] = "";
    const int rc = llm_model_load("llm_bad.bin", &m, err, sizeof err);
    if (rc == 0) {
        llm_model_free(&m);
        fail_msg("%s: accepted", what);
    }
    assert_null(m.data);
    if (!strstr(err, needle)) fail_msg("%s: message '%s' lacks '%s'", what, err, needle);
    printf("# rejected %-28s %s\n", what, err);
}

static void test_checkpoint_malformed(void **state) {
    (void)state;
    llm_model m;
    char err[1024] = "";
    assert_int_equal(llm_model_load("llm_does_not_exist.bin", &m, err, sizeof err), -1);
    assert_true(strlen(err) > 0);

    const int32_t good[7] = {TINY.dim, TINY.hidden_dim, TINY.n_layers, TINY.n_heads,
                             TINY.n_kv_heads, -TINY.vocab_size, TINY.seq_len};
    const size_t nf = (size_t)(llm_checkpoint_bytes(&TINY) - LLM_HEADER_BYTES) / 4;
    float *data = malloc((nf + 1) * 4);
    assert_non_null(data);
    for (size_t i = 0; i <= nf; i++) data[i] = 0.01f * (float)(i % 7);

    write_raw("llm_bad.bin", NULL, 0, NULL, 0);
    expect_reject("empty file", "truncated");
    write_raw("llm_bad.bin", good, 3, NULL, 0);
    expect_reject("partial header", "truncated");
    write_raw("llm_bad.bin", good, 7, NULL, 0);
    expect_reject("header only", "size mismatch");
    write_raw("llm_bad.bin", good, 7, data, nf - 1);
    expect_reject("one float short", "truncated");
    write_raw("llm_bad.bin", good, 7, data, nf + 1);
    expect_reject("trailing float", "trailing");
    /* the same weights read as a shared-classifier file: too long */
    int32_t h[7];
    memcpy(h, good, sizeof h);
    h[5] = TINY.vocab_size;
    write_raw("llm_bad.bin", h, 7, data, nf);
    expect_reject("vocab sign flipped", "size mismatch");

    static const struct {
        int field;
        int32_t value;
        const char *name, *needle;
    } bad[] = {
        {0, 0, "dim 0", "dim"},
        {0, -64, "negative dim", "dim"},
        {0, 1 << 30, "huge dim", "dim"},
        {1, 0, "hidden 0", "hidden_dim"},
        {1, INT32_MAX, "huge hidden", "hidden_dim"},
        {2, -3, "negative layers", "n_layers"},
        {2, 100000, "100000 layers", "n_layers"},
        {3, 0, "heads 0", "n_heads"},
        {3, 3, "heads not dividing dim", "multiple of n_heads"},
        {3, 32, "odd head size", "head size"},
        {3, 64, "more heads than dim", "n_heads"},
        {4, 0, "kv heads 0", "n_kv_heads"},
        {4, 8, "kv heads > heads", "n_kv_heads"},
        {4, 3, "heads % kv heads", "multiple of n_kv_heads"},
        {5, 0, "vocab 0", "vocab_size"},
        {5, INT32_MIN, "vocab INT32_MIN", "vocab_size"},
        {6, 0, "seq_len 0", "seq_len"},
        {6, -1, "negative seq_len", "seq_len"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(h, good, sizeof h);
        h[bad[i].field] = bad[i].value;
        write_raw("llm_bad.bin", h, 7, data, nf);
        expect_reject(bad[i].name, bad[i].needle);
    }
    /* head size above binv_kv_cache's 256 */
    const int32_t big_head[7] = {512, 16, 1, 1, 1, 4, 1};
    write_raw("llm_bad.bin", big_head, 7, NULL, 0);
    expect_reject("head size 512", "head size");
    /* non-finite weights */
    data[nf / 2] = NAN;
    write_raw("llm_bad.bin", good, 7, data, nf);
    expect_reject("NaN weight", "NaN");
    data[nf / 2] = INFINITY;
    write_raw("llm_bad.bin", good, 7, data, nf);
    expect_reject("infinite weight", "infinite");
    /* and the good file loads */
    data[nf / 2] = 0;
    write_raw("llm_bad.bin", good, 7, data, nf);
    assert_int_equal(llm_model_load("llm_bad.bin", &m, err, sizeof err), 0);
    llm_model_free(&m);
    remove("llm_bad.bin");
    free(data);
}

/* Headers within every field's range whose file is small but whose
 * per-sequence KV state (n_layers x seq_len x kv_dim, sized from the header
 * by the engine and the reference) is thousands of times the file: refused by
 * the loader and by the synthetic writer.  A FIFO given as the checkpoint is
 * refused without blocking (the watchdog turns a hang into a failure). */
static void on_loader_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_llm: watchdog: llm_model_load blocked\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

static void test_checkpoint_state_bounds(void **state) {
    (void)state;
    static const struct {
        llm_config c;
        const char *name;
    } amp[] = {
        /* 1024 layers of dim 2, seq_len 2^16: a 0.6 MB file, 2 GiB of KV a sequence */
        {{2, 1, 1024, 1, 1, 1, 1 << 16, 1}, "1024 layers x 64K positions"},
        /* 64 kv heads of 2 over 16 layers, seq_len 2^16: a 4.7 MB file, 2 GiB a sequence */
        {{128, 1, 16, 64, 64, 1, 1 << 16, 0}, "64 kv heads x 64K positions"},
    };
    char err[1024];
    for (size_t i = 0; i < sizeof amp / sizeof amp[0]; i++) {
        const llm_config *c = &amp[i].c;
        const uint64_t bytes = llm_checkpoint_bytes(c);
        assert_true(bytes < ((uint64_t)16 << 20));
        const size_t nf = (size_t)(bytes - LLM_HEADER_BYTES) / 4;
        float *data = calloc(nf, 4);
        assert_non_null(data);
        const int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                              c->shared_classifier ? c->vocab_size : -c->vocab_size, c->seq_len};
        write_raw("llm_bad.bin", h, 7, data, nf);
        free(data);
        expect_reject(amp[i].name, "per-sequence state");
        assert_int_equal(llm_config_check(c, err, sizeof err), -1);
        assert_int_equal(llm_synthetic_write("llm_bad.bin", c, 1, err, sizeof err), -1);
        assert_non_null(strstr(err, "per-sequence state"));
    }
    /* The same shapes with a short context are fine (the cap is on the state, not the shape). */
    llm_config ok = amp[0].c;
    ok.seq_len = 256;
    assert_int_equal(llm_config_check(&ok, err, sizeof err), 0);
    ok = TINY;
    ok.seq_len = 1 << 14; /* a tiny model with a long context: under the 64 MiB floor */
    assert_int_equal(llm_config_check(&ok, err, sizeof err), 0);

    remove("llm_fifo.bin");
    assert_int_equal(mkfifo("llm_fifo.bin", 0600), 0);
    void (*old)(int) = signal(SIGALRM, on_loader_alarm);
    alarm(60);
    llm_model m;
    const int rc = llm_model_load("llm_fifo.bin", &m, err, sizeof err);
    alarm(0);
    signal(SIGALRM, old);
    remove("llm_fifo.bin");
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "not a regular file"));
    remove("llm_bad.bin");
}

/* ---- engine ---------------------------------------------------------------------- */

/* Feeds prompt (in chunks of `chunk`) then `gen` greedy tokens through the
 * engine, one sequence in slot 0, and compares every logits row with the CPU
 * reference: |diff| <= tol * (1 + max |ref logit|).  Returns max diff. */
static double engine_vs_reference(const test_env *env, const llm_model *m, binv_dtype dt,
                                  const int *prompt, int plen, int gen, int chunk, double tol,
                                  int check_tokens) {
    const int V = m->cfg.vocab_size;
    llm_engine *e = engine(env, env->ctx, m, dt, 1, chunk);
    llm_ref *r = llm_ref_create(m, 1);
    float *le = malloc((size_t)V * 4), *lr = malloc((size_t)V * 4);
    assert_true(r && le && lr);
    assert_int_equal(llm_engine_seq_begin(e, 0, plen + gen - 1), 0);
    double maxdiff = 0;
    int pos = 0, tok = 0;
    for (int g = 0; g < gen; g++) {
        llm_work w;
        if (pos < plen) { /* prefill chunks; logits at the last */
            while (1) {
                const int n = plen - pos < chunk ? plen - pos : chunk;
                w = (llm_work){0, pos, n, prompt + pos, pos + n == plen};
                for (int t = 0; t < n; t++)
                    llm_ref_forward(r, 0, prompt[pos + t], pos + t, pos + t == plen - 1 ? lr : NULL);
                if (llm_engine_step(e, &w, 1, le)) fail_msg("%s", llm_engine_error(e));
                pos += n;
                if (pos == plen) break;
            }
        } else {
            w = (llm_work){0, pos, 1, &tok, 1};
            llm_ref_forward(r, 0, tok, pos, lr);
            if (llm_engine_step(e, &w, 1, le)) fail_msg("%s", llm_engine_error(e));
            pos++;
        }
        double mx = 0, d = 0;
        for (int i = 0; i < V; i++) {
            mx = fmax(mx, fabs(lr[i]));
            d = fmax(d, fabs((double)le[i] - lr[i]));
        }
        if (d > tol * (1 + mx))
            fail_msg("%s: token %d: max |logit diff| %g (max |logit| %g)",
                     hx_dtype_name(dt), g, d, mx);
        maxdiff = fmax(maxdiff, d);
        tok = argmax(le, V);
        if (check_tokens && tok != argmax(lr, V))
            fail_msg("%s: greedy token %d: engine %d, reference %d", hx_dtype_name(dt), g, tok,
                     argmax(lr, V));
        if (!check_tokens) tok = argmax(lr, V); /* follow the reference */
    }
    free(le), free(lr);
    llm_ref_destroy(r);
    llm_engine_destroy(e);
    return maxdiff;
}

static void test_engine_vs_reference(void **state) {
    test_env *env = *state;
    llm_model m;
    load_tiny(&m);
    const int prompt[7] = {1, 17, 3, 44, 9, 9, 30};
    double d = engine_vs_reference(env, &m, BINV_DTYPE_F32, prompt, 7, 20, 3, 1e-4, 1);
    printf("# tiny synthetic, f32: max |logit diff| %.3g over 20 tokens\n", d);
    d = engine_vs_reference(env, &m, BINV_DTYPE_BF16, prompt, 7, 6, 7, 0.1, 0);
    printf("# tiny synthetic, bf16: max |logit diff| %.3g\n", d);
    d = engine_vs_reference(env, &m, BINV_DTYPE_F16, prompt, 7, 6, 2, 0.02, 0);
    printf("# tiny synthetic, f16: max |logit diff| %.3g\n", d);
    llm_model_free(&m);
}

/* Runs request A (prompt, then `gen` greedy tokens) in slot 0 with its prompt
 * fed in chunks of `chunk`, alongside `ncomp` companion sequences that feed
 * random tokens (1..4 a step, random want_logits) and restart when full, in a
 * seeded random order.  Returns A's logits rows (gen x V, malloc'ed). */
static float *drive(llm_engine *e, const llm_model *m, const int *prompt, int plen, int gen,
                    int chunk, int ncomp, uint64_t seed) {
    const int V = m->cfg.vocab_size, clen = 40;
    float *out = malloc((size_t)gen * V * 4), *lg = malloc((size_t)(ncomp + 1) * V * 4);
    int *ctoks = malloc((size_t)ncomp * 4 * sizeof(int)), cpos[8] = {0};
    assert_true(out && lg && ctoks && ncomp < 8);
    assert_int_equal(llm_engine_seq_begin(e, 0, plen + gen - 1), 0);
    for (int c = 0; c < ncomp; c++) assert_int_equal(llm_engine_seq_begin(e, 1 + c, clen), 0);
    uint64_t rng = seed;
    int pos = 0, ngen = 0, tok = 0;
    while (ngen < gen) {
        llm_work w[8];
        int nw = 0, arow = -1;
        if (pos < plen) {
            const int n = plen - pos < chunk ? plen - pos : chunk;
            w[nw++] = (llm_work){0, pos, n, prompt + pos, pos + n == plen};
        } else {
            w[nw++] = (llm_work){0, pos, 1, &tok, 1};
        }
        for (int c = 0; c < ncomp; c++) {
            if (hx_rng_next(&rng) % 4 == 0) continue; /* sits this step out */
            int n = 1 + (int)(hx_rng_next(&rng) % 4);
            if (cpos[c] + n > clen) { /* full: finish and start again (new pages) */
                llm_engine_seq_end(e, 1 + c);
                assert_int_equal(llm_engine_seq_begin(e, 1 + c, clen), 0);
                cpos[c] = 0;
            }
            for (int t = 0; t < n; t++) ctoks[c * 4 + t] = (int)(hx_rng_next(&rng) % (uint64_t)V);
            w[nw++] = (llm_work){1 + c, cpos[c], n, ctoks + c * 4, (int)(hx_rng_next(&rng) % 2)};
            cpos[c] += n;
        }
        for (int i = nw; i > 1; i--) {
            const int j = (int)(hx_rng_next(&rng) % (uint64_t)i);
            const llm_work t = w[i - 1];
            w[i - 1] = w[j], w[j] = t;
        }
        for (int i = 0, row = 0; i < nw; i++) {
            if (w[i].slot == 0 && w[i].want_logits) arow = row;
            row += w[i].want_logits;
        }
        if (llm_engine_step(e, w, nw, lg)) fail_msg("%s", llm_engine_error(e));
        for (int i = 0; i < nw; i++)
            if (w[i].slot == 0) pos += w[i].n;
        if (arow >= 0) {
            memcpy(out + (size_t)ngen * V, lg + (size_t)arow * V, (size_t)V * 4);
            tok = argmax(lg + (size_t)arow * V, V);
            ngen++;
        }
    }
    for (int s = 0; s <= ncomp; s++) llm_engine_seq_end(e, s);
    free(lg), free(ctoks);
    return out;
}

/* A's logits rows are bitwise the same for every chunk size and companion
 * mix (invariant context). */
static void check_invariance(const test_env *env, const llm_model *m, const int *prompt,
                             int plen, int gen) {
    const int V = m->cfg.vocab_size;
    llm_engine *e = engine(env, env->ctx, m, BINV_DTYPE_F32, 4, plen + 12);
    const size_t total = llm_engine_free_pages(e);
    float *solo = drive(e, m, prompt, plen, gen, plen, 0, 1);
    static const int cfg[][2] = {{1, 3}, {3, 1}, {5, 2}, {2, 3}, {4, 0}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        float *x = drive(e, m, prompt, plen, gen, cfg[i][0], cfg[i][1], 100 + i);
        for (int g = 0; g < gen; g++)
            if (memcmp(solo + (size_t)g * V, x + (size_t)g * V, (size_t)V * 4))
                fail_msg("logits of token %d differ from the request alone (chunk %d, %d "
                         "companions)", g, cfg[i][0], cfg[i][1]);
        free(x);
    }
    assert_int_equal(llm_engine_free_pages(e), total); /* every page came back */
    free(solo);
    llm_engine_destroy(e);
}

static void test_engine_invariance_synthetic(void **state) {
    test_env *env = *state;
    llm_model m;
    load_tiny(&m);
    const int prompt[11] = {1, 5, 8, 13, 21, 34, 5, 8, 13, 2, 40};
    check_invariance(env, &m, prompt, 11, 8);
    llm_model_free(&m);
}

static void test_engine_pages(void **state) {
    test_env *env = *state;
    llm_model m;
    load_tiny(&m);
    /* 3 slots, a pool of 10 pages of 16 positions (seq_len 64: 4 pages each) */
    const llm_engine_opts o = {BINV_DTYPE_F32, 3, 16, 0, 10, 5};
    char err[1024];
    llm_engine *e = llm_engine_create(env->ctx, env->context, env->queue, &m, &o, err, sizeof err);
    if (!e) fail_msg("%s", err);
    assert_int_equal(llm_engine_free_pages(e), 10);
    assert_int_equal(llm_engine_seq_begin(e, 0, 64), 0);
    assert_int_equal(llm_engine_seq_begin(e, 1, 64), 0);
    assert_int_equal(llm_engine_seq_begin(e, 2, 64), -1); /* 12 > 10 pages */
    printf("# refused: %s\n", llm_engine_error(e));
    assert_int_equal(llm_engine_seq_begin(e, 2, 32), 0);
    assert_int_equal(llm_engine_seq_begin(e, 1, 8), -1); /* busy */
    int toks[17];
    for (int i = 0; i < 17; i++) toks[i] = (3 * i) % m.cfg.vocab_size;
    /* 16 tokens a step, slots taking turns: 48, 48 and 32 positions */
    for (int pos = 0; pos < 48; pos += 16)
        for (int s = 0; s < 3; s++) {
            if (s == 2 && pos + 16 > 32) continue;
            llm_work w = {s, pos, 16, toks, 0};
            if (llm_engine_step(e, &w, 1, NULL)) fail_msg("%s", llm_engine_error(e));
        }
    assert_int_equal(llm_engine_free_pages(e), 2);
    /* Pages: all distinct, some slot's not consecutive ascending. */
    int seen[10] = {0}, scattered = 0;
    for (int s = 0; s < 3; s++) {
        const cl_uint *p;
        const int n = llm_engine_seq_pages(e, s, &p);
        assert_int_equal(n, s == 2 ? 2 : 3);
        for (int i = 0; i < n; i++) {
            assert_true(p[i] < 10);
            assert_int_equal(seen[p[i]]++, 0);
            if (i && p[i] != p[i - 1] + 1) scattered = 1;
        }
    }
    assert_true(scattered);
    /* Bad work is refused with a message, not a crash. */
    float lg[64];
    llm_work bad = {0, 5, 1, toks, 1}; /* out of order */
    assert_int_equal(llm_engine_step(e, &bad, 1, lg), -1);
    printf("# refused: %s\n", llm_engine_error(e));
    int oov = m.cfg.vocab_size;
    bad = (llm_work){0, 48, 1, &oov, 1};
    assert_int_equal(llm_engine_step(e, &bad, 1, lg), -1);
    printf("# refused: %s\n", llm_engine_error(e));
    bad = (llm_work){0, 48, 17, toks, 1}; /* more than max_tokens and past the reservation */
    assert_int_equal(llm_engine_step(e, &bad, 1, lg), -1);
    bad = (llm_work){2, 32, 1, toks, 1}; /* past slot 2's 32 reserved positions */
    assert_int_equal(llm_engine_step(e, &bad, 1, lg), -1);
    llm_work twice[2] = {{0, 48, 1, toks, 1}, {0, 48, 1, toks, 1}};
    assert_int_equal(llm_engine_step(e, twice, 2, lg), -1);
    llm_engine_seq_end(e, 1);
    bad = (llm_work){1, 48, 1, toks, 1}; /* inactive slot */
    assert_int_equal(llm_engine_step(e, &bad, 1, lg), -1);
    /* a good step still works after the refusals */
    llm_work ok = {0, 48, 1, toks, 1};
    if (llm_engine_step(e, &ok, 1, lg)) fail_msg("%s", llm_engine_error(e));
    llm_engine_seq_end(e, 0);
    llm_engine_seq_end(e, 2);
    assert_int_equal(llm_engine_free_pages(e), 10);
    llm_engine_destroy(e);
    llm_model_free(&m);
}

/* Serving: N identical requests, continuous batching; with the invariant
 * context every request's logit stream equals the request served alone. */
static void serve_check(const test_env *env, const llm_model *m, const int *prompt, int plen,
                        int gen, llm_sampler smp, int per_request_seed, int expect_one) {
    static const struct { int n, batch, chunk, bmin, bmax; double gap; uint64_t seed; } cfg[] = {
        {1, 1, 64, 64, 64, 0, 1}, /* alone: the whole prompt at once */
        {20, 6, 3, 3, 9, 0.7, 2},
        {20, 4, 5, 1, 6, 0.3, 3},
    };
    llm_serve_result res[3];
    char err[1024];
    for (int i = 0; i < 3; i++) {
        llm_engine *e = engine(env, env->ctx, m, BINV_DTYPE_F32, cfg[i].batch, cfg[i].bmax);
        llm_backend b = llm_engine_backend(e);
        const llm_serve_opts o = {cfg[i].n, prompt, plen, gen, cfg[i].batch, cfg[i].chunk,
                                  cfg[i].bmin, cfg[i].bmax, cfg[i].gap, cfg[i].seed, smp, 77,
                                  per_request_seed, m->cfg.vocab_size, NULL, NULL};
        if (llm_serve(&b, &o, &res[i], err, sizeof err)) fail_msg("%s", err);
        llm_engine_destroy(e);
    }
    const size_t bytes = (size_t)gen * sizeof(int);
    for (int i = 1; i < 3; i++) {
        const llm_divergence d = llm_compare(&res[i], res[0].tokens);
        printf("# serve cfg %d: %ld steps, %ld batch shapes, %d distinct completions, %d logit "
               "streams\n", i, res[i].steps, res[i].distinct_compositions,
               d.distinct_completions, d.distinct_logit_streams);
        assert_true(res[i].distinct_compositions > 5);
        if (expect_one) {
            assert_int_equal(d.distinct_completions, 1);
            assert_int_equal(d.distinct_logit_streams, 1);
            assert_int_equal(d.differing_requests, 0);
            assert_true(res[i].logit_hash[0] == res[0].logit_hash[0]);
        } else { /* per-request seeds: request r's tokens are the same in every run */
            assert_memory_equal(res[1].tokens, res[2].tokens, (size_t)res[1].n_requests * bytes);
            assert_memory_equal(res[1].logit_hash, res[2].logit_hash,
                                (size_t)res[1].n_requests * sizeof(uint64_t));
            assert_memory_equal(res[i].tokens, res[0].tokens, bytes); /* request 0 */
            assert_true(d.distinct_completions > 1);
        }
    }
    for (int i = 0; i < 3; i++) llm_serve_result_free(&res[i]);
}

static void test_serve_synthetic(void **state) {
    test_env *env = *state;
    llm_model m;
    load_tiny(&m);
    const int prompt[9] = {1, 4, 9, 16, 25, 36, 49, 3, 7};
    serve_check(env, &m, prompt, 9, 10, (llm_sampler){0, 0, 1}, 0, 1);
    serve_check(env, &m, prompt, 9, 10, (llm_sampler){1.0f, 20, 0.9f}, 0, 1);
    /* the reference as a backend serves the same greedy completion */
    llm_ref *r = llm_ref_create(&m, 4);
    llm_backend b = llm_ref_backend(r);
    llm_engine *e = engine(env, env->ctx, &m, BINV_DTYPE_F32, 4, 8);
    llm_backend be = llm_engine_backend(e);
    const llm_serve_opts o = {6, prompt, 9, 10, 4, 3, 2, 8, 0.5, 5, {0, 0, 1}, 0, 0,
                              m.cfg.vocab_size, NULL, NULL};
    llm_serve_result rr, re;
    char err[1024];
    if (llm_serve(&b, &o, &rr, err, sizeof err)) fail_msg("%s", err);
    if (llm_serve(&be, &o, &re, err, sizeof err)) fail_msg("%s", err);
    assert_memory_equal(rr.tokens, re.tokens, 6 * 10 * sizeof(int));
    llm_serve_result_free(&rr);
    llm_serve_result_free(&re);
    llm_engine_destroy(e);
    llm_ref_backend_free(&b);
    llm_ref_destroy(r);
    llm_model_free(&m);
    remove(TINY_PATH);
}

/* ---- stories260K (optional) --------------------------------------------------- */

static void test_stories_reference(void **state) {
    test_env *env = *state;
    llm_model m;
    if (load_stories(&m)) skip();
    const int bos = 1;
    const double d = engine_vs_reference(env, &m, BINV_DTYPE_F32, &bos, 1, 64, 1, 1e-4, 1);
    printf("# stories260K f32: 64 greedy tokens from BOS equal the reference; max |logit diff| "
           "%.3g\n", d);
    llm_model_free(&m);
}

static void test_stories_invariance(void **state) {
    test_env *env = *state;
    llm_model m;
    if (load_stories(&m)) skip();
    const int prompt[10] = {1, 403, 407, 261, 378, 430, 259, 270, 395, 411};
    check_invariance(env, &m, prompt, 10, 12);
    serve_check(env, &m, prompt, 10, 12, (llm_sampler){0, 0, 1}, 0, 1);
    llm_model_free(&m);
}

static void test_stories_sampling(void **state) {
    test_env *env = *state;
    llm_model m;
    if (load_stories(&m)) skip();
    const int prompt[4] = {1, 403, 407, 261};
    const llm_sampler s = {0.9f, 40, 0.95f};
    serve_check(env, &m, prompt, 4, 16, s, 0, 1); /* one seed: one completion */
    serve_check(env, &m, prompt, 4, 16, s, 1, 0); /* per-request seeds reproduce */
    llm_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_checkpoint_malformed),
        cmocka_unit_test(test_checkpoint_state_bounds),
        cmocka_unit_test(test_engine_vs_reference),
        cmocka_unit_test(test_engine_invariance_synthetic),
        cmocka_unit_test(test_engine_pages),
        cmocka_unit_test(test_serve_synthetic),
        cmocka_unit_test(test_stories_reference),
        cmocka_unit_test(test_stories_invariance),
        cmocka_unit_test(test_stories_sampling),
    };
    return cmocka_run_group_tests_name("llm", tests, test_env_setup, test_env_teardown);
}
