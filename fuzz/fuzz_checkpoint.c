/* libFuzzer harness over the llama2.c checkpoint loader (tools/llm/checkpoint.c)
 * and, for loaded models small enough, the CPU reference forward pass that
 * reads every weight through the loader's layout.
 *
 * Input modes (first byte):
 *   0xF1  "fit": bytes [1, 29) are the header; the rest is repeated or cut to
 *         exactly the size the header implies (when llm_config_check accepts it
 *         and that size is at most FIT_MAX), non-finite floats replaced by 0.
 *         This lets the fuzzer reach a loaded model from any valid header
 *         instead of having to guess the exact file length.
 *   other the input is the file, byte for byte.
 * The file is written to a memfd and loaded through /proc/self/fd/N.
 *
 * Oracle (abort() on violation, which libFuzzer reports as a crash):
 *   - rejected: -1, a non-empty message, nothing allocated (m.data NULL);
 *   - loaded: the header fields are the file's (vocab sign = classifier
 *     sharing), llm_config_check accepts them, the file size is exactly
 *     llm_checkpoint_bytes, every tensor pointer lies inside the loaded data
 *     (the last one ends exactly at its end), every weight is finite, and the
 *     per-sequence state is within the documented cap (max(4 x file, 64 MiB));
 *   - ASan/UBSan: no out-of-bounds access, leak or undefined behaviour in the
 *     loader or (models up to REF_MAX bytes of state) in llm_ref_create +
 *     two positions of llm_ref_forward. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "llm.h"

#define FIT_MAX ((size_t)64 << 10)
#define REF_MAX ((uint64_t)1 << 20)

static int fd = -1;
static char path[64];
static unsigned char *fitbuf;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_checkpoint: oracle violation: %s\n", what);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fd = memfd_create("fuzz_checkpoint", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    fitbuf = malloc(FIT_MAX);
    if (!fitbuf) abort();
    return 0;
}

static int put_file(const unsigned char *d, size_t n) {
    if (ftruncate(fd, 0) != 0) return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, d + done, n - done, (off_t)done);
        if (w <= 0) return -1;
        done += (size_t)w;
    }
    return 0;
}

/* Fit mode: header + payload repeated to the implied size; 0 bytes if the
 * header is refused or too large. */
static size_t fit(const unsigned char *d, size_t n) {
    if (n < 29) return 0;
    int32_t h[7];
    memcpy(h, d + 1, 28);
    llm_config c = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], 1};
    if (c.vocab_size < 0 && c.vocab_size != INT32_MIN) c.vocab_size = -c.vocab_size, c.shared_classifier = 0;
    char err[256];
    if (llm_config_check(&c, err, sizeof err)) return 0;
    const uint64_t want = llm_checkpoint_bytes(&c);
    if (want > FIT_MAX) return 0;
    memcpy(fitbuf, h, 28);
    const unsigned char *p = d + 29;
    const size_t pn = n - 29;
    for (size_t i = 28; i < want; i++) fitbuf[i] = pn ? p[(i - 28) % pn] : 0;
    for (size_t i = 28; i + 4 <= want; i += 4) {
        float v;
        memcpy(&v, fitbuf + i, 4);
        if (!isfinite(v)) memset(fitbuf + i, 0, 4);
    }
    return (size_t)want;
}

static int inside(const llm_model *m, const float *p, uint64_t count, uint64_t nf) {
    return p >= m->data && (uint64_t)(p - m->data) <= nf && count <= nf - (uint64_t)(p - m->data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const unsigned char *file = data;
    size_t fsize = size;
    if (size && data[0] == 0xF1) {
        fsize = fit(data, size);
        if (!fsize) return 0;
        file = fitbuf;
    }
    if (put_file(file, fsize)) abort();

    llm_model m;
    char err[1024] = "";
    const int rc = llm_model_load(path, &m, err, sizeof err);
    if (rc != 0) {
        check(rc == -1, "status other than 0 / -1");
        check(err[0] != '\0', "rejection without a message");
        check(m.data == NULL, "rejection left data allocated");
        return 0;
    }
    const llm_config *c = &m.cfg;
    int32_t h[7];
    check(fsize >= 28, "loaded a file shorter than the header");
    memcpy(h, file, 28);
    check(h[0] == c->dim && h[1] == c->hidden_dim && h[2] == c->n_layers &&
              h[3] == c->n_heads && h[4] == c->n_kv_heads && h[6] == c->seq_len,
          "config differs from the header");
    check(c->shared_classifier ? h[5] == c->vocab_size : h[5] == -c->vocab_size,
          "vocab sign / classifier sharing");
    check(llm_config_check(c, err, sizeof err) == 0, "loaded a config the check refuses");
    check(llm_checkpoint_bytes(c) == fsize, "file size is not the header's size");
    const uint64_t nf = (fsize - 28) / 4;
    const uint64_t d = (uint64_t)c->dim, hd = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers,
                   v = (uint64_t)c->vocab_size, kv = (uint64_t)llm_kv_dim(c);
    check(inside(&m, m.tok_emb, v * d, nf) && inside(&m, m.rms_att, L * d, nf) &&
              inside(&m, m.wq, L * d * d, nf) && inside(&m, m.wk, L * kv * d, nf) &&
              inside(&m, m.wv, L * kv * d, nf) && inside(&m, m.wo, L * d * d, nf) &&
              inside(&m, m.rms_ffn, L * d, nf) && inside(&m, m.w1, L * hd * d, nf) &&
              inside(&m, m.w2, L * d * hd, nf) && inside(&m, m.w3, L * hd * d, nf) &&
              inside(&m, m.rms_final, d, nf) && inside(&m, m.wcls, v * d, nf),
          "a tensor outside the loaded data");
    /* rms_final, the two RoPE tables (seq_len x head_size/2 each), [wcls]: the end */
    const uint64_t end = (uint64_t)(m.rms_final - m.data) + d +
                         (uint64_t)c->seq_len * (uint64_t)llm_head_size(c) +
                         (c->shared_classifier ? 0 : v * d);
    check(end == nf, "the tensors do not end where the file does");
    check(c->shared_classifier ? m.wcls == m.tok_emb
                               : (uint64_t)(m.wcls - m.data) == nf - v * d,
          "classifier placement");
    for (uint64_t i = 0; i < nf; i++) check(isfinite(m.data[i]), "a non-finite weight loaded");
    const uint64_t state =
        8 * (2 * L * (uint64_t)c->seq_len * kv + 4 * d + 2 * kv + (uint64_t)c->seq_len + 2 * hd + v);
    const uint64_t cap = 4 * (uint64_t)fsize > ((uint64_t)64 << 20) ? 4 * (uint64_t)fsize
                                                                     : (uint64_t)64 << 20;
    check(state <= cap, "per-sequence state above the cap");
    if (state <= REF_MAX) {
        llm_ref *r = llm_ref_create(&m, 1);
        check(r != NULL, "llm_ref_create failed on a small model");
        float *logits = malloc((size_t)c->vocab_size * sizeof(float));
        check(logits != NULL, "out of memory");
        llm_ref_forward(r, 0, c->vocab_size - 1, 0, logits);
        if (c->seq_len > 1) llm_ref_forward(r, 0, 0, 1, logits);
        free(logits);
        llm_ref_destroy(r);
    }
    llm_model_free(&m);
    return 0;
}
