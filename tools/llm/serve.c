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

/* The serving loop's state: the requests, the running set, the free slots
 * and one step's work (work_req[i]: the request of work[i]). */
typedef struct server {
    const llm_backend *b;
    const llm_serve_opts *o;
    llm_serve_result *res;
    req *rq;
    int *running, *free_slots, *dec, *work_req;
    llm_work *work;
    float *logits;
    void *swork;
    int nfree, nrun, next, ndone;
    long step;
    uint64_t srng; /* the schedule's: budgets and the order within a step */
} server;

/* Admits arrived requests while slots and pages last. */
static int admit(server *sv, char *err, size_t errlen) {
    const llm_backend *b = sv->b;
    const int N = sv->o->n_requests, P = sv->o->prompt_len, G = sv->o->gen_tokens;
    while (sv->next < N && sv->rq[sv->next].arrival <= sv->step && sv->nfree > 0) {
        const int slot = sv->free_slots[sv->nfree - 1];
        if (b->seq_begin(b->self, slot, P + G - 1) != 0) {
            if (sv->nrun == 0)
                return fail(err, errlen, "serve: a single request does not fit: %s",
                            b->error(b->self));
            break;
        }
        sv->nfree--;
        sv->rq[sv->next].slot = slot;
        sv->running[sv->nrun++] = sv->next++;
    }
    return 0;
}

/* One step's work under a random token budget: decode tokens first, then
 * prompt chunks, in a shuffled order.  Returns the number of sequences. */
static int compose(server *sv) {
    const llm_serve_opts *o = sv->o;
    const int P = o->prompt_len;
    const int bmin = o->budget_min < 1 ? 1 : o->budget_min;
    const int bmax = o->budget_max < bmin ? bmin : o->budget_max;
    req *rq = sv->rq;
    llm_work *work = sv->work;
    int *work_req = sv->work_req;
    int budget = bmin + (int)(hx_rng_next(&sv->srng) % (uint64_t)(bmax - bmin + 1));
    int nw = 0, ndec = 0;
    for (int i = 0; i < sv->nrun; i++)
        if (rq[sv->running[i]].prefilled == P) sv->dec[ndec++] = sv->running[i];
    /* Decode tokens first, from a rotating start, so that no request
     * waits for long when the budget is short. */
    for (int j = 0; j < ndec && budget > 0; j++) {
        const int i = sv->dec[(int)((sv->step + j) % ndec)];
        req *r = &rq[i];
        work[nw] = (llm_work){r->slot, P + r->ngen - 1, 1, &r->last_tok, 1};
        work_req[nw++] = i;
        budget--;
    }
    /* Then prompt chunks, in admission order. */
    for (int k = 0; k < sv->nrun && budget > 0; k++) {
        req *r = &rq[sv->running[k]];
        if (r->prefilled == P) continue;
        int n = P - r->prefilled;
        if (n > o->chunk) n = o->chunk;
        if (n > budget) n = budget;
        work[nw] = (llm_work){r->slot, r->prefilled, n, o->prompt + r->prefilled,
                              r->prefilled + n == P};
        work_req[nw++] = sv->running[k];
        budget -= n;
    }
    /* Shuffle the order of the sequences in the step. */
    for (int i = nw; i > 1; i--) {
        const int j = (int)(hx_rng_next(&sv->srng) % (uint64_t)i);
        const llm_work tw = work[i - 1];
        work[i - 1] = work[j], work[j] = tw;
        const int tr = work_req[i - 1];
        work_req[i - 1] = work_req[j], work_req[j] = tr;
    }
    return nw;
}

/* After a step: prefill progress, the sampled tokens and logit hashes, and
 * the requests that finished give their slots back. */
static void take_outputs(server *sv, int nw) {
    const llm_serve_opts *o = sv->o;
    const int P = o->prompt_len, G = o->gen_tokens;
    int row = 0;
    for (int i = 0; i < nw; i++) {
        const llm_work *wk = &sv->work[i];
        req *r = &sv->rq[sv->work_req[i]];
        if (wk->pos0 < P) r->prefilled += wk->n;
        if (!wk->want_logits) continue;
        const float *lg = sv->logits + (size_t)row++ * (size_t)o->vocab;
        r->hash = fnv(r->hash, lg, (size_t)o->vocab * sizeof(float));
        const int tok = llm_sample(&o->sampler, lg, o->vocab, r->seed,
                                   (uint64_t)(wk->pos0 + wk->n), sv->swork);
        if (o->on_sample) o->on_sample(o->user, sv->work_req[i], r->ngen, lg, tok);
        sv->res->tokens[(size_t)sv->work_req[i] * G + r->ngen++] = tok;
        r->last_tok = tok;
        if (r->ngen == G) {
            r->done = 1;
            sv->ndone++;
            sv->b->seq_end(sv->b->self, r->slot);
            sv->free_slots[sv->nfree++] = r->slot;
            r->slot = -1;
        }
    }
    int k = 0;
    for (int i = 0; i < sv->nrun; i++)
        if (!sv->rq[sv->running[i]].done) sv->running[k++] = sv->running[i];
    sv->nrun = k;
}

int llm_serve(const llm_backend *b, const llm_serve_opts *o, llm_serve_result *res, char *err,
              size_t errlen) {
    memset(res, 0, sizeof *res);
    const int N = o->n_requests, P = o->prompt_len, G = o->gen_tokens, B = o->max_batch;
    if (N < 1 || P < 1 || G < 1 || B < 1 || o->chunk < 1 || o->vocab < 1)
        return fail(err, errlen, "serve: requests, prompt, tokens, max batch, chunk must be >= 1");
    server sv = {.b = b, .o = o, .res = res, .nfree = B};
    req *rq = sv.rq = calloc((size_t)N, sizeof *rq);
    sv.running = malloc((size_t)B * sizeof(int));
    sv.free_slots = malloc((size_t)B * sizeof(int));
    sv.dec = malloc((size_t)B * sizeof(int));
    sv.work = malloc((size_t)B * sizeof *sv.work);
    sv.work_req = malloc((size_t)B * sizeof(int));
    sv.logits = malloc((size_t)B * (size_t)o->vocab * sizeof(float));
    sv.swork = malloc(llm_sample_work_bytes(o->vocab));
    res->tokens = malloc((size_t)N * (size_t)G * sizeof(int));
    res->logit_hash = malloc((size_t)N * sizeof(uint64_t));
    hx_hashset shapes = {0};
    int rc = -1;
    if (!rq || !sv.running || !sv.dec || !sv.free_slots || !sv.work || !sv.work_req ||
        !sv.logits || !sv.swork || !res->tokens || !res->logit_hash) {
        fail(err, errlen, "serve: out of host memory");
        goto out;
    }
    res->n_requests = N, res->gen_tokens = G;
    /* Arrival schedule: gaps uniform in [0, 2 * arrival_gap]. */
    uint64_t arng = o->seed ^ 0xa5a5a5a5deadbeefull;
    sv.srng = o->seed * 0x9e3779b97f4a7c15ull + 7;
    long t = 0;
    for (int i = 0; i < N; i++) {
        if (i) t += (long)floor(uniform01(&arng) * 2.0 * o->arrival_gap + 0.5);
        rq[i].arrival = t;
        rq[i].slot = -1;
        rq[i].hash = 0xcbf29ce484222325ull;
        rq[i].seed = o->sample_seed + (o->per_request_seed ? (uint64_t)i : 0);
    }
    for (int s = 0; s < B; s++) sv.free_slots[s] = B - 1 - s;
    const double t0 = hx_now_s();
    while (sv.ndone < N) {
        if (admit(&sv, err, errlen)) goto out;
        if (sv.nrun == 0) { /* idle until the next arrival */
            sv.step = rq[sv.next].arrival;
            continue;
        }
        const int nw = compose(&sv);
        int shape[512], ns = 0, tokens = 0;
        for (int i = 0; i < nw; i++) {
            if (ns < 512) shape[ns++] = sv.work[i].n;
            tokens += sv.work[i].n;
        }
        hx_hashset_add(&shapes, shape, (size_t)ns * sizeof(int));
        if (b->step(b->self, sv.work, nw, sv.logits) != 0) {
            fail(err, errlen, "serve: step %ld: %s", sv.step, b->error(b->self));
            goto out;
        }
        res->tokens_processed += tokens;
        if (tokens > res->max_step_tokens) res->max_step_tokens = tokens;
        if (nw > res->max_step_seqs) res->max_step_seqs = nw;
        take_outputs(&sv, nw);
        sv.step++;
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
    free(rq), free(sv.running), free(sv.dec), free(sv.free_slots), free(sv.work);
    free(sv.work_req), free(sv.logits), free(sv.swork);
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
