/* binv-llm: a small Llama-architecture inference engine on libbinv-cl's public
 * API, with a plain-C reference forward pass, a host sampler and a serving
 * loop with continuous batching.  Not part of the library: a demo and an
 * experiment (docs/llm.md). */
#ifndef BINV_TOOLS_LLM_H
#define BINV_TOOLS_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "binv/binv.h"

/* ---- Checkpoints (llama2.c legacy float32 format) -------------------------
 * 7 little-endian int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len (vocab_size < 0: a separate classifier wcls follows
 * everything else), then float32 arrays: token_embedding [vocab, dim],
 * rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim],
 * wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
 * w3 [L, hidden, dim], rms_final [dim], two legacy RoPE tables (seq_len *
 * head_size/2 floats each, skipped), [wcls [vocab, dim]]. */

#define LLM_HEADER_BYTES 28

typedef struct llm_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* 1: logits use the token embedding (vocab_size > 0 in the file) */
} llm_config;

static inline int llm_head_size(const llm_config *c) { return c->dim / c->n_heads; }
static inline int llm_kv_dim(const llm_config *c) { return c->dim / c->n_heads * c->n_kv_heads; }

typedef struct llm_model {
    llm_config cfg;
    float *data; /* every float of the file after the header (owned) */
    const float *tok_emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final,
        *wcls;
} llm_model;

/* Checks a header's values (positive, divisible, within sane limits: see
 * checkpoint.c).  Returns 0, or -1 with a message in err. */
int llm_config_check(const llm_config *c, char *err, size_t errlen);
/* Size in bytes of a well-formed checkpoint with this header. */
uint64_t llm_checkpoint_bytes(const llm_config *c);
/* Loads a checkpoint, rejecting a truncated or oversized file, absurd header
 * values and non-finite weights.  Returns 0, or -1 with a message in err
 * (never crashes on malformed input). */
int llm_model_load(const char *path, llm_model *m, char *err, size_t errlen);
void llm_model_free(llm_model *m);

/* Writes a synthetic checkpoint of shape cfg with seeded weights: normal
 * N(0, 1/fan_in) matrices, N(0, 1) embeddings, norm weights 1 + N(0, 0.1^2),
 * classifier N(0, 4/dim) (separate when !cfg->shared_classifier).  Streams
 * to the file (constant memory).  Returns 0 or -1 with a message. */
int llm_synthetic_write(const char *path, const llm_config *cfg, uint64_t seed, char *err,
                        size_t errlen);
/* The same synthetic model (the same floats) in memory, without a file: what
 * llm_model_load would return for the checkpoint llm_synthetic_write writes.
 * Returns 0 or -1 with a message (free with llm_model_free). */
int llm_model_synthetic(const llm_config *cfg, uint64_t seed, llm_model *m, char *err,
                        size_t errlen);

/* ---- CPU reference forward pass (double activations and accumulation) ----- */
typedef struct llm_ref llm_ref;
/* Caches for `max_seqs` sequences of up to cfg.seq_len positions. */
llm_ref *llm_ref_create(const llm_model *m, int max_seqs);
void llm_ref_destroy(llm_ref *r);
/* Runs token `token` of sequence `seq` at position `pos` (positions of a
 * sequence must be fed 0, 1, 2, ...) and writes vocab logits (as float) if
 * logits != NULL. */
void llm_ref_forward(llm_ref *r, int seq, int token, int pos, float *logits);

/* ---- Work of one step (shared by the engine, the reference backend and the
 * serving loop) -------------------------------------------------------------
 * One entry per sequence of the step: n new tokens at positions pos0 ..
 * pos0+n-1; want_logits: 1 returns the logits of its last new token,
 * LLM_LOGITS_ALL those of every new token (the engine only; a trainer's
 * pass), 0 none; rows in the order of the entries and tokens. */
#define LLM_LOGITS_ALL 2
typedef struct llm_work {
    int slot;
    int pos0, n;
    const int *tokens;
    int want_logits;
} llm_work;

/* ---- The OpenCL engine ---------------------------------------------------- */
typedef struct llm_engine llm_engine;
typedef struct llm_engine_opts {
    binv_dtype dtype;
    int max_slots;     /* concurrent sequences */
    int max_tokens;    /* new tokens per step */
    int max_len;       /* positions per sequence; 0 = the model's seq_len */
    size_t num_pages;  /* KV pages per layer pool; 0 = max_slots * ceil(max_len / page) */
    uint64_t page_seed;/* the free-page list is shuffled with this seed */
} llm_engine_opts;

/* Uploads the weights converted to opts->dtype.  Returns NULL with a message
 * in err on failure. */
llm_engine *llm_engine_create(binv_context *ctx, cl_context clctx, cl_command_queue queue,
                              const llm_model *m, const llm_engine_opts *opts, char *err,
                              size_t errlen);
void llm_engine_destroy(llm_engine *e);
/* Sequence slots: begin reserves pages for max_len positions (0 or -1 when
 * the pool cannot hold them now); pages are taken from the shuffled free list
 * as positions grow, and returned (at random places of the list) by end. */
int llm_engine_seq_begin(llm_engine *e, int slot, int max_len);
void llm_engine_seq_end(llm_engine *e, int slot);
/* Moves a begun sequence n positions on without computing them: their K/V
 * pages are taken as a step would take them and keep what the pool holds
 * (zeros from creation, or an earlier sequence's values).  For benchmarks: a
 * decode step's cost depends on the context length, not on the values.
 * Returns 0, or -1 with a message (n past the reservation). */
int llm_engine_seq_advance(llm_engine *e, int slot, int n);
/* One forward step over the work list.  logits: rows of vocab floats, one
 * per entry with want_logits, in order; NULL leaves them on the device
 * (llm_engine_logits) and only waits for the step to finish.  Returns 0, or -1 with a message
 * (binv_context_last_error included) in llm_engine_error(). */
int llm_engine_step(llm_engine *e, const llm_work *w, int nwork, float *logits);
const char *llm_engine_error(const llm_engine *e);
/* The engine's limits: sequences (slots) and tokens per step. */
int llm_engine_max_slots(const llm_engine *e);
int llm_engine_max_tokens(const llm_engine *e);
/* The device buffer of the last step's logits: rows of vocab values in the
 * engine's dtype, one per entry with want_logits. */
cl_mem llm_engine_logits(const llm_engine *e);
/* Bytes a step reads from weights (every layer, final norm, classifier) and,
 * per cached position, from the K/V cache of all layers. */
uint64_t llm_engine_weight_bytes(const llm_engine *e);
uint64_t llm_engine_kv_bytes_per_position(const llm_engine *e);
/* Pages of a slot (for tests: allocation is deliberately non-contiguous). */
int llm_engine_seq_pages(const llm_engine *e, int slot, const cl_uint **pages);
size_t llm_engine_free_pages(const llm_engine *e);

/* ---- Sampling (host; deterministic) ---------------------------------------- */
/* Philox4x32-10 (Salmon et al. 2011, Random123): ctr and key in, out. */
void llm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* Uniform double in [0, 1) from Philox keyed by seed at counter `position`. */
double llm_uniform(uint64_t seed, uint64_t position);

typedef struct llm_sampler {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1 (or >= 1): off */
} llm_sampler;
/* Samples a token from `vocab` logits; seed and position pick the uniform.
 * Greedy takes the first index of the maximum.  work: scratch of vocab
 * (index, prob) pairs, or NULL (allocated per call). */
int llm_sample(const llm_sampler *s, const float *logits, int vocab, uint64_t seed,
               uint64_t position, void *work);
size_t llm_sample_work_bytes(int vocab);

/* ---- Serving loop with continuous batching -------------------------------- */
typedef struct llm_backend {
    void *self;
    int (*seq_begin)(void *self, int slot, int max_len);
    void (*seq_end)(void *self, int slot);
    int (*step)(void *self, const llm_work *w, int nwork, float *logits);
    const char *(*error)(void *self);
} llm_backend;
llm_backend llm_engine_backend(llm_engine *e);
/* The reference as a backend (slot = its sequence index; slow). */
llm_backend llm_ref_backend(llm_ref *r);
void llm_ref_backend_free(llm_backend *b);

typedef struct llm_serve_opts {
    int n_requests;
    const int *prompt;
    int prompt_len;
    int gen_tokens;       /* tokens generated per request */
    int max_batch;        /* concurrent sequences (slots) */
    int chunk;            /* prefill chunk (tokens of one prompt per step) */
    int budget_min, budget_max; /* random per-step token budget */
    double arrival_gap;   /* mean steps between arrivals (0: all at step 0) */
    uint64_t seed;        /* arrivals, budgets, order of sequences in a step */
    llm_sampler sampler;
    uint64_t sample_seed; /* per-request seed = sample_seed (+ request index if per_request_seed) */
    int per_request_seed;
    int vocab;
    /* Optional: called for every sampled logits row (request, token index,
     * vocab logits, the token sampled from them). */
    void (*on_sample)(void *user, int request, int index, const float *logits, int token);
    void *user;
} llm_serve_opts;

typedef struct llm_serve_result {
    int n_requests, gen_tokens;
    int *tokens;            /* n_requests x gen_tokens */
    uint64_t *logit_hash;   /* per request: FNV-1a of every logits row it sampled from */
    double seconds;         /* wall time of the loop */
    long steps, tokens_processed, max_step_tokens, max_step_seqs;
    long distinct_compositions; /* distinct (q_len list) step shapes seen */
} llm_serve_result;

/* Runs the loop; returns 0 or -1 with a message in err. */
int llm_serve(const llm_backend *b, const llm_serve_opts *o, llm_serve_result *r, char *err,
              size_t errlen);
void llm_serve_result_free(llm_serve_result *r);

/* Comparison of a run against a reference completion (e.g. the request run
 * alone). */
typedef struct llm_divergence {
    int distinct_completions, distinct_logit_streams;
    int modal_count;         /* requests sharing the most common completion */
    int differing_requests;  /* completions != reference */
    int first_divergence;    /* smallest token index where any request differs; -1 if none */
    double mean_divergence;  /* mean first-divergence index over differing requests */
} llm_divergence;
llm_divergence llm_compare(const llm_serve_result *r, const int *ref_tokens);

/* ---- Trainer/sampler parity ------------------------------------------------ */
/* log_softmax(logits)[token] in double, summed in index order: the log-prob
 * both sides of the parity check compute from a row of logits. */
double llm_logprob(const float *logits, int vocab, int token);

typedef struct llm_parity_result {
    long tokens;        /* sampled tokens recomputed */
    long differing;     /* of them, log-probs not bitwise equal to the recorded ones */
    double max_abs_diff;
    int pack;           /* sequences per trainer step */
    long steps;
} llm_parity_result;

/* Recomputes the log-prob of every token sampled in r the way a trainer
 * does: each request's full sequence (prompt + completion but its last
 * token) in one forward pass from an empty cache, `pack` sequences to a
 * step, packed in reverse request order (not the serving order), every
 * position's logits.  recorded: n_requests x gen_tokens log-probs taken at
 * sampling time (llm_logprob of the row the token was sampled from).  The
 * engine needs pack slots and pack x (prompt_len + gen_tokens - 1) tokens a
 * step (pack is lowered to fit).  Returns 0, or -1 with a message. */
int llm_parity(llm_engine *e, const llm_serve_opts *o, const llm_serve_result *r,
               const double *recorded, int pack, llm_parity_result *out, char *err,
               size_t errlen);

/* Parses "1,403,22" into out (at most max); returns the count or -1. */
int llm_parse_ids(const char *s, int *out, int max);

#endif
