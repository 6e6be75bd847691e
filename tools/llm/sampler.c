/* Host sampling: greedy, temperature, top-k, top-p, with a counter-based
 * generator so that a request's samples depend on its seed, the position and
 * its own logits only (never on the batch or the order of requests). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

void llm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1,
                       n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

double llm_uniform(uint64_t seed, uint64_t position) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)position, (uint32_t)(position >> 32), 0, 0};
    uint32_t o[4];
    llm_philox4x32_10(ctr, key, o);
    /* 53 random bits: exact in double, in [0, 1). */
    const uint64_t bits = ((uint64_t)(o[0] >> 5) << 26) | (o[1] >> 6);
    return (double)bits * (1.0 / 9007199254740992.0);
}

typedef struct cand {
    int idx;
    double p; /* probability (unnormalised) */
} cand;

size_t llm_sample_work_bytes(int vocab) { return (size_t)vocab * sizeof(cand); }

/* Descending probability, ties by ascending index: a total order, so the
 * result does not depend on qsort's algorithm. */
static int by_prob(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int argmax(const float *l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i]))) best = i;
    return best;
}

/* Min-heap (by by_prob: the root is the least likely kept candidate) of the
 * k best candidates. */
static void sift_down(cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && by_prob(&h[l], &h[m]) > 0) m = l;
        if (r < n && by_prob(&h[r], &h[m]) > 0) m = r;
        if (m == i) return;
        const cand t = h[i];
        h[i] = h[m], h[m] = t;
        i = m;
    }
}

static int by_index(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The token whose cumulative share, walking c[0..n) in order, first exceeds
 * u * mass. */
static int pick(const cand *c, int n, double mass, uint64_t seed, uint64_t position) {
    const double u = llm_uniform(seed, position) * mass;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].idx;
    }
    return c[n - 1].idx;
}

int llm_sample(const llm_sampler *s, const float *logits, int vocab, uint64_t seed,
               uint64_t position, void *work) {
    if (s->temperature <= 0 || s->top_k == 1) return argmax(logits, vocab);
    cand *c = work ? work : malloc(llm_sample_work_bytes(vocab));
    if (!c) return argmax(logits, vocab);
    const double mx = logits[argmax(logits, vocab)], t = s->temperature;
    const int use_p = s->top_p > 0 && s->top_p < 1;
    const int k = s->top_k > 0 && s->top_k < vocab ? s->top_k : 0;
    int n = 0, tok;
    if (!k && !use_p) {
        /* Plain temperature: the whole vocabulary in token order. */
        double mass = 0;
        for (int i = 0; i < vocab; i++) {
            c[i] = (cand){i, exp(((double)logits[i] - mx) / t)};
            mass += c[i].p;
        }
        tok = pick(c, vocab, mass, seed, position);
        if (!work) free(c);
        return tok;
    }
    double threshold = 0; /* nucleus: the smallest prefix whose mass reaches it */
    if (k) {
        /* The k most likely (a heap: O(vocab log k)). */
        for (int i = 0; i < vocab; i++) {
            const cand x = {i, exp(((double)logits[i] - mx) / t)};
            if (n < k) {
                c[n++] = x;
                for (int j = n - 1; j > 0;) { /* sift up */
                    int p = (j - 1) / 2;
                    if (by_prob(&c[j], &c[p]) <= 0) break;
                    const cand tmp = c[j];
                    c[j] = c[p], c[p] = tmp;
                    j = p;
                }
            } else if (by_prob(&x, &c[0]) < 0) {
                c[0] = x;
                sift_down(c, n, 0);
            }
        }
        qsort(c, (size_t)n, sizeof *c, by_prob);
        double mass = 0;
        for (int i = 0; i < n; i++) mass += c[i].p;
        threshold = s->top_p * mass;
    } else {
        double total = 0;
        for (int i = 0; i < vocab; i++) total += exp(((double)logits[i] - mx) / t);
        /* With top-p, a token of less than (1 - p) / (vocab - 1) of the mass
         * cannot be in the nucleus (llama2.c's cut-off): a short sort. */
        const double cutoff = (1.0 - s->top_p) / (vocab > 1 ? vocab - 1 : 1) * total;
        for (int i = 0; i < vocab; i++) {
            const double p = exp(((double)logits[i] - mx) / t);
            if (p >= cutoff) c[n++] = (cand){i, p};
        }
        qsort(c, (size_t)n, sizeof *c, by_prob);
        threshold = s->top_p * total;
    }
    double mass = 0;
    for (int i = 0; i < n; i++) {
        mass += c[i].p;
        if (use_p && mass >= threshold) {
            n = i + 1;
            break;
        }
    }
    /* Sample the kept tokens in token order, as torch.multinomial over a
     * masked distribution does: then the sample moves with the logits only
     * where u sits on a boundary or the kept set changes, not whenever two
     * tokens of similar probability swap places in a sorted list. */
    qsort(c, (size_t)n, sizeof *c, by_index);
    mass = 0;
    for (int i = 0; i < n; i++) mass += c[i].p;
    tok = pick(c, n, mass, seed, position);
    if (!work) free(c);
    return tok;
}
