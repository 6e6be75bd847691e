/* Trainer/sampler parity: the log-probs a trainer recomputes for the tokens a
 * sampler drew, compared bit for bit with those recorded at sampling time
 * (docs/llm.md).  The trainer's pass differs from serving in everything a
 * batch-invariant library must not let matter: whole sequences in one
 * forward pass instead of chunked prefill plus decode, other sequences
 * packed beside them, other slots and KV pages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

double llm_logprob(const float *logits, int vocab, int token) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < vocab; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < vocab; j++) sum += exp((double)logits[j] - mx);
    return (double)logits[token] - mx - log(sum);
}

/* The requests of one trainer step: [first, first + n) of the reverse order. */
static int parity_step(llm_engine *e, const llm_serve_opts *o, const llm_serve_result *r,
                       const double *recorded, int first, int n, int *seq, float *logits,
                       llm_parity_result *out, char *err, size_t errlen) {
    const int P = o->prompt_len, G = r->gen_tokens, len = P + G - 1, V = o->vocab;
    llm_work w[64];
    for (int i = 0; i < n; i++) {
        const int req = r->n_requests - 1 - (first + i);
        int *s = seq + (size_t)i * len;
        memcpy(s, o->prompt, (size_t)P * sizeof(int));
        memcpy(s + P, r->tokens + (size_t)req * G, (size_t)(G - 1) * sizeof(int));
        if (llm_engine_seq_begin(e, i, len)) {
            for (int j = 0; j < i; j++) llm_engine_seq_end(e, j);
            snprintf(err, errlen, "parity: %s", llm_engine_error(e));
            return -1;
        }
        w[i] = (llm_work){i, 0, len, s, LLM_LOGITS_ALL};
    }
    const int rc = llm_engine_step(e, w, n, logits);
    for (int i = 0; i < n; i++) llm_engine_seq_end(e, i);
    if (rc) {
        snprintf(err, errlen, "parity: %s", llm_engine_error(e));
        return -1;
    }
    out->steps++;
    for (int i = 0; i < n; i++) {
        const int req = r->n_requests - 1 - (first + i);
        /* Token t of the completion was sampled from the logits of position
         * P - 1 + t, row i * len + P - 1 + t of this step. */
        for (int t = 0; t < G; t++) {
            const float *row = logits + ((size_t)i * len + (size_t)(P - 1 + t)) * V;
            const double lp = llm_logprob(row, V, r->tokens[(size_t)req * G + t]);
            const double rec = recorded[(size_t)req * G + t];
            const double d = fabs(lp - rec);
            out->tokens++;
            if (memcmp(&lp, &rec, sizeof lp)) out->differing++;
            if (d > out->max_abs_diff || d != d) out->max_abs_diff = d;
        }
    }
    return 0;
}

int llm_parity(llm_engine *e, const llm_serve_opts *o, const llm_serve_result *r,
               const double *recorded, int pack, llm_parity_result *out, char *err,
               size_t errlen) {
    memset(out, 0, sizeof *out);
    const int P = o->prompt_len, G = r->gen_tokens, V = o->vocab;
    if (P < 1 || G < 1 || V < 1 || r->n_requests < 1) {
        snprintf(err, errlen, "parity: nothing to recompute");
        return -1;
    }
    const int len = P + G - 1;
    if (pack > 64) pack = 64;
    if (pack > llm_engine_max_slots(e)) pack = llm_engine_max_slots(e);
    if (pack > llm_engine_max_tokens(e) / len) pack = llm_engine_max_tokens(e) / len;
    if (pack < 1) {
        snprintf(err, errlen, "parity: the engine takes %d tokens a step, a sequence has %d",
                 llm_engine_max_tokens(e), len);
        return -1;
    }
    out->pack = pack;
    int *seq = malloc((size_t)pack * len * sizeof(int));
    float *logits = malloc((size_t)pack * len * V * sizeof(float));
    int rc = 0;
    if (!seq || !logits) {
        snprintf(err, errlen, "parity: out of host memory");
        rc = -1;
    }
    for (int first = 0; !rc && first < r->n_requests; first += pack) {
        const int n = r->n_requests - first < pack ? r->n_requests - first : pack;
        rc = parity_step(e, o, r, recorded, first, n, seq, logits, out, err, errlen);
    }
    free(seq);
    free(logits);
    return rc;
}
