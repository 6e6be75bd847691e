/* binv-llm's host side (tools/llm): Philox and the sampler, the checkpoint
 * loader on well-formed and malformed files, and the per-sequence state
 * bounds.  No OpenCL device is needed. */
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

#include "test_llm.h"

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
        /* The in-memory synthetic model holds the file's floats. */
        llm_model mm;
        assert_int_equal(llm_model_synthetic(&c, 3, &mm, err, sizeof err), 0);
        assert_memory_equal(&mm.cfg, &c, sizeof c);
        assert_memory_equal(mm.data, m.data, (size_t)(llm_checkpoint_bytes(&c) - LLM_HEADER_BYTES));
        assert_true(mm.wcls[(size_t)c.vocab_size * c.dim - 1] == m.wcls[(size_t)c.vocab_size * c.dim - 1]);
        llm_model_free(&mm);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_checkpoint_malformed),
        cmocka_unit_test(test_checkpoint_state_bounds),
    };
    return cmocka_run_group_tests_name("llm_model", tests, NULL, NULL);
}
