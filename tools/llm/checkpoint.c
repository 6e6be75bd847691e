/* llama2.c checkpoints: validation, loading, synthetic generation. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llm.h"
#include "harness.h"

/* Limits of a "sane" header: far above any Llama-family model's, low enough
 * that no product below overflows 64 bits and that garbage is caught.  Every
 * size product is overflow-checked all the same (checked_floats), so the
 * limits are not what keeps the arithmetic safe. */
#define MAX_DIM 65536
#define MAX_HIDDEN (1 << 20)
#define MAX_LAYERS 1024
#define MAX_HEAD_SIZE 256 /* binv_kv_cache.head_dim */
#define MAX_VOCAB (1 << 22)
#define MAX_SEQ (1 << 20)
/* The state that the engine and the reference size from the header alone, per
 * sequence: K and V for seq_len positions of every layer (the reference keeps
 * them as doubles, 8 bytes a value, the most of any backend) plus the
 * per-position activations.  The weights are all in the file (its size must
 * match the header exactly), but seq_len and n_layers x kv_dim multiply into
 * this state without bound: a 9 MB file can ask for 16 GiB per sequence.  So
 * one sequence's state may be at most LLM_STATE_RATIO times the file's size,
 * or LLM_STATE_FLOOR, whichever is larger (real checkpoints need well under
 * one file size at their trained seq_len; the floor keeps tiny synthetic
 * models with long contexts usable).  The number of sequences is the caller's
 * choice (engine options), not the file's. */
#define LLM_STATE_RATIO 4
#define LLM_STATE_FLOOR ((uint64_t)64 << 20)

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* a * b * c; any overflow sets *ovf. */
static uint64_t mul3(uint64_t a, uint64_t b, uint64_t c, int *ovf) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r)) *ovf = 1;
    return r;
}

static uint64_t add(uint64_t a, uint64_t b, int *ovf) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) *ovf = 1;
    return r;
}

/* Floats after the header; sets *ovf when any product or sum overflows. */
static uint64_t checked_floats(const llm_config *c, int *ovf) {
    const uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers,
                   v = (uint64_t)c->vocab_size, kv = (uint64_t)llm_kv_dim(c),
                   hs = (uint64_t)llm_head_size(c);
    uint64_t n = mul3(v, d, 1, ovf);              /* token embedding */
    n = add(n, mul3(L, d, 1, ovf), ovf);          /* rms_att */
    n = add(n, mul3(L, d, d, ovf), ovf);          /* wq */
    n = add(n, mul3(2 * L, kv, d, ovf), ovf);     /* wk, wv */
    n = add(n, mul3(L, d, d, ovf), ovf);          /* wo */
    n = add(n, mul3(L, d, 1, ovf), ovf);          /* rms_ffn */
    n = add(n, mul3(3 * L, h, d, ovf), ovf);      /* w1, w2, w3 */
    n = add(n, d, ovf);                           /* rms_final */
    n = add(n, mul3((uint64_t)c->seq_len, hs, 1, ovf), ovf); /* legacy RoPE tables (2 x hs/2) */
    if (!c->shared_classifier) n = add(n, mul3(v, d, 1, ovf), ovf); /* wcls */
    return n;
}

/* Bytes of one sequence's header-sized state (see LLM_STATE_RATIO). */
static uint64_t checked_state_bytes(const llm_config *c, int *ovf) {
    const uint64_t kvv = mul3(2 * (uint64_t)c->n_layers, (uint64_t)c->seq_len,
                              (uint64_t)llm_kv_dim(c), ovf);
    /* activations of one position: x, xb, xb2, q (dim), k, v (kv_dim), att (seq_len),
     * hb, hb2 (hidden), logits (vocab) */
    uint64_t act = add(mul3(4, (uint64_t)c->dim, 1, ovf), mul3(2, (uint64_t)llm_kv_dim(c), 1, ovf),
                       ovf);
    act = add(act, (uint64_t)c->seq_len, ovf);
    act = add(act, mul3(2, (uint64_t)c->hidden_dim, 1, ovf), ovf);
    act = add(act, (uint64_t)c->vocab_size, ovf);
    return mul3(add(kvv, act, ovf), 8, 1, ovf);
}

int llm_config_check(const llm_config *c, char *err, size_t errlen) {
#define RANGE(f, lo, hi)                                                                     \
    if (c->f < (lo) || c->f > (hi))                                                          \
        return fail(err, errlen, "header: %s = %d is out of range [%d, %d]", #f, c->f, (lo), \
                    (hi));
    RANGE(dim, 1, MAX_DIM)
    RANGE(hidden_dim, 1, MAX_HIDDEN)
    RANGE(n_layers, 1, MAX_LAYERS)
    RANGE(n_heads, 1, c->dim)
    RANGE(n_kv_heads, 1, c->n_heads)
    RANGE(vocab_size, 1, MAX_VOCAB)
    RANGE(seq_len, 1, MAX_SEQ)
#undef RANGE
    if (c->dim % c->n_heads)
        return fail(err, errlen, "header: dim = %d is not a multiple of n_heads = %d", c->dim,
                    c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return fail(err, errlen, "header: n_heads = %d is not a multiple of n_kv_heads = %d",
                    c->n_heads, c->n_kv_heads);
    const int hs = c->dim / c->n_heads;
    if (hs % 2 || hs > MAX_HEAD_SIZE)
        return fail(err, errlen, "header: head size dim/n_heads = %d must be even and <= %d", hs,
                    MAX_HEAD_SIZE);
    int ovf = 0;
    const uint64_t floats = checked_floats(c, &ovf);
    const uint64_t state = checked_state_bytes(c, &ovf);
    if (ovf || floats > (UINT64_MAX - LLM_HEADER_BYTES) / 4 / LLM_STATE_RATIO)
        return fail(err, errlen, "header: sizes overflow 64 bits");
    const uint64_t file = LLM_HEADER_BYTES + 4 * floats;
    const uint64_t cap = LLM_STATE_RATIO * file > LLM_STATE_FLOOR ? LLM_STATE_RATIO * file
                                                                  : LLM_STATE_FLOOR;
    if (state > cap)
        return fail(err, errlen,
                    "header: per-sequence state (KV cache of %d layers x seq_len %d x kv_dim %d "
                    "and activations) needs %llu bytes, more than %d x the %llu-byte file "
                    "(or %llu bytes)",
                    c->n_layers, c->seq_len, llm_kv_dim(c), (unsigned long long)state,
                    LLM_STATE_RATIO, (unsigned long long)file,
                    (unsigned long long)LLM_STATE_FLOOR);
    return 0;
}

/* Only for configurations that passed llm_config_check (no overflow there). */
static uint64_t checkpoint_floats(const llm_config *c) {
    int ovf = 0;
    const uint64_t n = checked_floats(c, &ovf);
    return ovf ? UINT64_MAX / 8 : n;
}

uint64_t llm_checkpoint_bytes(const llm_config *c) {
    return LLM_HEADER_BYTES + 4 * checkpoint_floats(c);
}

/* Points the weight pointers into m->data. */
static void layout(llm_model *m) {
    const llm_config *c = &m->cfg;
    const size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, L = (size_t)c->n_layers,
                 v = (size_t)c->vocab_size, kv = (size_t)llm_kv_dim(c),
                 hs = (size_t)llm_head_size(c);
    const float *p = m->data;
    m->tok_emb = p, p += v * d;
    m->rms_att = p, p += L * d;
    m->wq = p, p += L * d * d;
    m->wk = p, p += L * kv * d;
    m->wv = p, p += L * kv * d;
    m->wo = p, p += L * d * d;
    m->rms_ffn = p, p += L * d;
    m->w1 = p, p += L * h * d;
    m->w2 = p, p += L * d * h;
    m->w3 = p, p += L * h * d;
    m->rms_final = p, p += d;
    p += (size_t)c->seq_len * hs; /* freq_cis_real, freq_cis_imag */
    m->wcls = c->shared_classifier ? m->tok_emb : p;
}

int llm_model_load(const char *path, llm_model *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (!little_endian()) return fail(err, errlen, "big-endian hosts are not supported");
    /* O_NONBLOCK: a FIFO or device given as the path must not block the
     * open; it is refused by the fstat below. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    }
    const uint64_t fsize = (uint64_t)st.st_size;
    int32_t hdr[7];
    if (fsize < LLM_HEADER_BYTES || fread(hdr, 4, 7, f) != 7) {
        fclose(f);
        return fail(err, errlen, "%s: truncated: %llu bytes, shorter than the 28-byte header",
                    path, (unsigned long long)fsize);
    }
    llm_config c = {hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], 1};
    if (c.vocab_size < 0 && c.vocab_size != INT32_MIN) {
        c.vocab_size = -c.vocab_size;
        c.shared_classifier = 0;
    }
    char why[256];
    if (llm_config_check(&c, why, sizeof why)) {
        fclose(f);
        return fail(err, errlen,
                    "%s: not a llama2.c checkpoint (%s; header dim=%d hidden=%d layers=%d "
                    "heads=%d kv_heads=%d vocab=%d seq_len=%d)",
                    path, why, hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]);
    }
    const uint64_t want = llm_checkpoint_bytes(&c);
    if (fsize != want) {
        fclose(f);
        return fail(err, errlen,
                    "%s: size mismatch: the header (dim=%d hidden=%d layers=%d heads=%d "
                    "kv_heads=%d vocab=%d%s seq_len=%d) needs %llu bytes, the file has %llu (%s)",
                    path, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                    c.shared_classifier ? "" : " +wcls", c.seq_len, (unsigned long long)want,
                    (unsigned long long)fsize, fsize < want ? "truncated" : "trailing bytes");
    }
    const uint64_t nf = (want - LLM_HEADER_BYTES) / 4;
    if (nf > SIZE_MAX / 4) {
        fclose(f);
        return fail(err, errlen, "%s: too large for this host's address space", path);
    }
    float *data = malloc((size_t)nf * 4);
    if (!data) {
        fclose(f);
        return fail(err, errlen, "%s: out of host memory for %llu bytes of weights", path,
                    (unsigned long long)nf * 4);
    }
    size_t got = fread(data, 4, (size_t)nf, f);
    fclose(f);
    if (got != nf) {
        free(data);
        return fail(err, errlen, "%s: read error after %zu of %llu floats", path, got,
                    (unsigned long long)nf);
    }
    m->cfg = c;
    m->data = data;
    layout(m);
    /* Non-finite weights: a corrupt file, never a model. */
    for (size_t i = 0; i < (size_t)nf; i++)
        if (!isfinite(data[i])) {
            const float v = data[i];
            llm_model_free(m);
            return fail(err, errlen, "%s: weight %zu (byte offset %zu) is %s", path, i,
                        LLM_HEADER_BYTES + 4 * i, isnan(v) ? "NaN" : "infinite");
        }
    return 0;
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* ---- Synthetic checkpoints ------------------------------------------------- */

/* Approximately standard normal from integer arithmetic only (the same bits
 * on every host): the sum of four 16-bit uniforms (Irwin-Hall), centred and
 * scaled to unit variance. */
static double normal(uint64_t *s) {
    const uint64_t r = hx_rng_next(s);
    const double sum = (double)(r & 0xffff) + (double)((r >> 16) & 0xffff) +
                       (double)((r >> 32) & 0xffff) + (double)(r >> 48);
    /* each term: mean 32767.5, variance (65536^2 - 1)/12 */
    return (sum - 4 * 32767.5) / sqrt(4 * (65536.0 * 65536.0 - 1) / 12);
}

/* Where the generated floats go: a file (through buf) or memory (mem). */
typedef struct writer {
    FILE *f;
    float *mem;
    float buf[4096];
    size_t n;
    int bad;
} writer;

static void put(writer *w, float v) {
    if (w->mem) {
        *w->mem++ = v;
        return;
    }
    w->buf[w->n++] = v;
    if (w->n == sizeof w->buf / sizeof w->buf[0]) {
        if (fwrite(w->buf, 4, w->n, w->f) != w->n) w->bad = 1;
        w->n = 0;
    }
}

/* count values mean + std * normal, from a seed derived from (seed, tensor). */
static void tensor(writer *w, uint64_t seed, int id, uint64_t count, double mean, double std) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + (uint64_t)id * 0xd1b54a32d192ed03ull + 1;
    for (uint64_t i = 0; i < count; i++) put(w, (float)(mean + std * normal(&s)));
}

/* Every float after the header, in file order. */
static void synthetic_floats(writer *w, const llm_config *cfg, uint64_t seed) {
    const uint64_t d = (uint64_t)cfg->dim, h = (uint64_t)cfg->hidden_dim,
                   L = (uint64_t)cfg->n_layers, v = (uint64_t)cfg->vocab_size,
                   kv = (uint64_t)llm_kv_dim(cfg), hs = (uint64_t)llm_head_size(cfg);
    const double sd = 1.0 / sqrt((double)d), sh = 1.0 / sqrt((double)h);
    tensor(w, seed, 0, v * d, 0, 1.0);       /* token embedding */
    tensor(w, seed, 1, L * d, 1.0, 0.1);     /* rms_att */
    tensor(w, seed, 2, L * d * d, 0, sd);    /* wq */
    tensor(w, seed, 3, L * kv * d, 0, sd);   /* wk */
    tensor(w, seed, 4, L * kv * d, 0, sd);   /* wv */
    tensor(w, seed, 5, L * d * d, 0, sd);    /* wo */
    tensor(w, seed, 6, L * d, 1.0, 0.1);     /* rms_ffn */
    tensor(w, seed, 7, L * h * d, 0, sd);    /* w1 */
    tensor(w, seed, 8, L * d * h, 0, sh);    /* w2 */
    tensor(w, seed, 9, L * h * d, 0, sd);    /* w3 */
    tensor(w, seed, 10, d, 1.0, 0.1);        /* rms_final */
    /* Legacy RoPE tables, as llama2.c's export writes them (cos, then sin). */
    for (int t = 0; t < 2; t++)
        for (uint64_t p = 0; p < (uint64_t)cfg->seq_len; p++)
            for (uint64_t i = 0; i < hs / 2; i++) {
                const double a = (double)p * pow(10000.0, -2.0 * (double)i / (double)hs);
                put(w, (float)(t == 0 ? cos(a) : sin(a)));
            }
    if (!cfg->shared_classifier) tensor(w, seed, 11, v * d, 0, 2.0 * sd); /* wcls */
}

int llm_synthetic_write(const char *path, const llm_config *cfg, uint64_t seed, char *err,
                        size_t errlen) {
    if (!little_endian()) return fail(err, errlen, "big-endian hosts are not supported");
    if (llm_config_check(cfg, err, errlen)) return -1;
    writer *w = calloc(1, sizeof *w);
    if (!w) return fail(err, errlen, "out of host memory");
    w->f = fopen(path, "wb");
    if (!w->f) {
        free(w);
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    }
    int32_t hdr[7] = {cfg->dim, cfg->hidden_dim, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads,
                      cfg->shared_classifier ? cfg->vocab_size : -cfg->vocab_size, cfg->seq_len};
    if (fwrite(hdr, 4, 7, w->f) != 7) w->bad = 1;
    synthetic_floats(w, cfg, seed);
    if (w->n && fwrite(w->buf, 4, w->n, w->f) != w->n) w->bad = 1;
    if (fclose(w->f) != 0) w->bad = 1;
    const int bad = w->bad;
    free(w);
    if (bad) {
        remove(path);
        return fail(err, errlen, "%s: write failed (disk full?)", path);
    }
    return 0;
}

int llm_model_synthetic(const llm_config *cfg, uint64_t seed, llm_model *m, char *err,
                        size_t errlen) {
    memset(m, 0, sizeof *m);
    if (llm_config_check(cfg, err, errlen)) return -1;
    int ovf = 0;
    const uint64_t nf = checked_floats(cfg, &ovf);
    if (ovf || nf > SIZE_MAX / 4) return fail(err, errlen, "model too large for this host");
    float *data = malloc((size_t)nf * 4);
    if (!data)
        return fail(err, errlen, "out of host memory for %llu bytes of weights",
                    (unsigned long long)nf * 4);
    writer w = {.mem = data};
    synthetic_floats(&w, cfg, seed);
    m->cfg = *cfg;
    m->data = data;
    layout(m);
    return 0;
}

int llm_parse_ids(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || n >= max) return -1;
        out[n++] = (int)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}
