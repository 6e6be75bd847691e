/* The serving loop: continuous batching of N requests over a backend.
 *
 * Requests arrive at steps drawn from a seeded schedule, are admitted while
 * a slot (and KV pages) is free, and leave as soon as they have generated
 * their tokens.  Every step draws a token budget; decode tokens (one per
 * running request that has its prompt in the cache) go first, in a rotating
 * order, then prompt chunks of at most `chunk` tokens fill the rest, so
 * prefill chunks mix with other requests' decode steps and the composition of
 * the batch keeps changing.  The order of the sequences inside a step is
 * shuffled too.  Sampling happens on the host from each request's own logits
 * with its own seed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "harness.h"

typedef struct req {
    long arrival;
    int slot, prefilled, ngen, done, last_tok;
    uint64_t hash, seed;
} req;

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static double uniform01(uint64_t *s) {
    return (double)(hx_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void llm_serve_result_free(llm_serve_result *r) {
    free(r->tokens);
    free(r->logit_hash);
    memset(r, 0, sizeof *r);
}

int llm_serve(const llm_backend *b, const llm_serve_opts *o, llm_serve_result *res, char *err,
              size_t errlen) {
    memset(res, 0, sizeof *res);
    const int N = o->n_requests, P = o->prompt_len, G = o->gen_tokens, B = o->max_batch;
    if (N < 1 || P < 1 || G < 1 || B < 1 || o->chunk < 1 || o->vocab < 1)
        return fail(err, errlen, "serve: requests, prompt, tokens, max batch, chunk must be >= 1");
    const int bmin = o->budget_min < 1 ? 1 : o->budget_min;
    const int bmax = o->budget_max < bmin ? bmin : o->budget_max;
    req *rq = calloc((size_t)N, sizeof *rq);
    int *running = malloc((size_t)B * sizeof(int)), *free_slots = malloc((size_t)B * sizeof(int));
    int *dec = malloc((size_t)B * sizeof(int));
    llm_work *work = malloc((size_t)B * sizeof *work);
    int *work_req = malloc((size_t)B * sizeof(int));
    float *logits = malloc((size_t)B * (size_t)o->vocab * sizeof(float));
    void *swork = malloc(llm_sample_work_bytes(o->vocab));
    res->tokens = malloc((size_t)N * (size_t)G * sizeof(int));
    res->logit_hash = malloc((size_t)N * sizeof(uint64_t));
    hx_hashset shapes = {0};
    int rc = -1;
    if (!rq || !running || !dec || !free_slots || !work || !work_req || !logits || !swork ||
        !res->tokens || !res->logit_hash) {
        fail(err, errlen, "serve: out of host memory");
        goto out;
    }
    res->n_requests = N, res->gen_tokens = G;
    /* Arrival schedule: gaps uniform in [0, 2 * arrival_gap]. */
    uint64_t arng = o->seed ^ 0xa5a5a5a5deadbeefull, srng = o->seed * 0x9e3779b97f4a7c15ull + 7;
    long t = 0;
    for (int i = 0; i < N; i++) {
        if (i) t += (long)floor(uniform01(&arng) * 2.0 * o->arrival_gap + 0.5);
        rq[i].arrival = t;
        rq[i].slot = -1;
        rq[i].hash = 0xcbf29ce484222325ull;
        rq[i].seed = o->sample_seed + (o->per_request_seed ? (uint64_t)i : 0);
    }
    for (int s = 0; s < B; s++) free_slots[s] = B - 1 - s;
    int nfree = B, nrun = 0, next = 0, ndone = 0;
    long step = 0;
    const double t0 = hx_now_s();
    while (ndone < N) {
        /* Admit arrived requests while slots and pages last. */
        while (next < N && rq[next].arrival <= step && nfree > 0) {
            const int slot = free_slots[nfree - 1];
            if (b->seq_begin(b->self, slot, P + G - 1) != 0) {
                if (nrun == 0) {
                    fail(err, errlen, "serve: a single request does not fit: %s",
                         b->error(b->self));
                    goto out;
                }
                break;
            }
            nfree--;
            rq[next].slot = slot;
            running[nrun++] = next++;
        }
        if (nrun == 0) { /* idle until the next arrival */
            step = rq[next].arrival;
            continue;
        }
        int budget = bmin + (int)(hx_rng_next(&srng) % (uint64_t)(bmax - bmin + 1));
        int nw = 0, ndec = 0;
        for (int i = 0; i < nrun; i++)
            if (rq[running[i]].prefilled == P) dec[ndec++] = running[i];
        /* Decode tokens first, from a rotating start, so that no request
         * waits for long when the budget is short. */
        for (int j = 0; j < ndec && budget > 0; j++) {
            const int i = dec[(int)((step + j) % ndec)];
            req *r = &rq[i];
            work[nw] = (llm_work){r->slot, P + r->ngen - 1, 1, &r->last_tok, 1};
            work_req[nw++] = i;
            budget--;
        }
        /* Then prompt chunks, in admission order. */
        for (int k = 0; k < nrun && budget > 0; k++) {
            req *r = &rq[running[k]];
            if (r->prefilled == P) continue;
            int n = P - r->prefilled;
            if (n > o->chunk) n = o->chunk;
            if (n > budget) n = budget;
            work[nw] = (llm_work){r->slot, r->prefilled, n, o->prompt + r->prefilled,
                                  r->prefilled + n == P};
            work_req[nw++] = running[k];
            budget -= n;
        }
        /* Shuffle the order of the sequences in the step. */
        for (int i = nw; i > 1; i--) {
            const int j = (int)(hx_rng_next(&srng) % (uint64_t)i);
            const llm_work tw = work[i - 1];
            work[i - 1] = work[j], work[j] = tw;
            const int tr = work_req[i - 1];
            work_req[i - 1] = work_req[j], work_req[j] = tr;
        }
        int shape[512], ns = 0, tokens = 0;
        for (int i = 0; i < nw; i++) {
            if (ns < 512) shape[ns++] = work[i].n;
            tokens += work[i].n;
        }
        hx_hashset_add(&shapes, shape, (size_t)ns * sizeof(int));
        if (b->step(b->self, work, nw, logits) != 0) {
            fail(err, errlen, "serve: step %ld: %s", step, b->error(b->self));
            goto out;
        }
        res->tokens_processed += tokens;
        if (tokens > res->max_step_tokens) res->max_step_tokens = tokens;
        if (nw > res->max_step_seqs) res->max_step_seqs = nw;
        int row = 0;
        for (int i = 0; i < nw; i++) {
            req *r = &rq[work_req[i]];
            if (work[i].pos0 < P) r->prefilled += work[i].n;
            if (!work[i].want_logits) continue;
            const float *lg = logits + (size_t)row++ * (size_t)o->vocab;
            r->hash = fnv(r->hash, lg, (size_t)o->vocab * sizeof(float));
            const int tok = llm_sample(&o->sampler, lg, o->vocab, r->seed,
                                       (uint64_t)(work[i].pos0 + work[i].n), swork);
            if (o->on_sample) o->on_sample(o->user, work_req[i], r->ngen, lg, tok);
            res->tokens[(size_t)work_req[i] * G + r->ngen++] = tok;
            r->last_tok = tok;
            if (r->ngen == G) {
                r->done = 1;
                ndone++;
                b->seq_end(b->self, r->slot);
                free_slots[nfree++] = r->slot;
                r->slot = -1;
            }
        }
        int k = 0;
        for (int i = 0; i < nrun; i++)
            if (!rq[running[i]].done) running[k++] = running[i];
        nrun = k;
        step++;
        res->steps++;
    }
    res->seconds = hx_now_s() - t0;
    for (int i = 0; i < N; i++) res->logit_hash[i] = rq[i].hash;
    res->distinct_compositions = shapes.count;
    rc = 0;
out:
    if (rc) {
        for (int i = 0; i < N && rq; i++)
            if (rq[i].slot >= 0) b->seq_end(b->self, rq[i].slot);
        llm_serve_result_free(res);
    }
    hx_hashset_free(&shapes);
    free(rq), free(running), free(dec), free(free_slots), free(work), free(work_req), free(logits);
    free(swork);
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

llm_divergence llm_compare(const llm_serve_result *r, const int *ref) {
    llm_divergence d = {0, 0, 0, 0, -1, 0};
    hx_hashset comp = {0}, lg = {0};
    double sum = 0;
    const int G = r->gen_tokens;
    for (int i = 0; i < r->n_requests; i++) {
        const int *t = r->tokens + (size_t)i * G;
        hx_hashset_add(&comp, t, (size_t)G * sizeof(int));
        hx_hashset_add(&lg, &r->logit_hash[i], sizeof(uint64_t));
        int j = 0;
        while (j < G && t[j] == ref[j]) j++;
        if (j < G) {
            d.differing_requests++;
            sum += j;
            if (d.first_divergence < 0 || j < d.first_divergence) d.first_divergence = j;
        }
    }
    /* the most common completion: sort the completions' hashes, longest run */
    uint64_t *h = malloc((size_t)r->n_requests * sizeof *h);
    if (h) {
        for (int i = 0; i < r->n_requests; i++)
            h[i] = hx_hash(r->tokens + (size_t)i * G, (size_t)G * sizeof(int));
        qsort(h, (size_t)r->n_requests, sizeof *h, cmp_u64);
        for (int i = 0, run = 0; i < r->n_requests; i++) {
            run = i && h[i] == h[i - 1] ? run + 1 : 1;
            if (run > d.modal_count) d.modal_count = run;
        }
        free(h);
    }
    d.distinct_completions = comp.count;
    d.distinct_logit_streams = lg.count;
    d.mean_divergence = d.differing_requests ? sum / d.differing_requests : 0;
    hx_hashset_free(&comp);
    hx_hashset_free(&lg);
    return d;
}
