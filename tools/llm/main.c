/* binv-llm: serves N identical requests of a Llama-architecture model
 * (llama2.c checkpoint) with continuous batching on libbinv-cl, once with the
 * adaptive (throughput-tuned, not batch-invariant) schedule and once with the
 * invariant one, and counts how many distinct completions each produces.
 * docs/llm.md describes the options, what is measured and results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "llm.h"

#define MAX_PROMPT 4096

typedef struct options {
    const char *device, *model, *synthetic, *report, *cache_dir;
    int list, write_only, check, native;
    llm_config shape;
    uint64_t weights_seed;
    binv_dtype dtype;
    int prompt[MAX_PROMPT], prompt_len;
    int requests, tokens, max_batch, chunk, budget_min, budget_max;
    double arrival_gap;
    uint64_t seed, sample_seed;
    int per_request_seed;
    llm_sampler sampler;
    size_t pages;
    int run_adaptive, run_invariant;
    int parity; /* trainer/sampler parity check: sequences packed per trainer step; 0 off */
} options;

/* --help: the usage on stdout, exit status 0; a bad command line: on stderr, 2. */
static int usage_to(FILE *f, int status, const char *argv0) {
    fprintf(f,
        "usage: %s (--model PATH | --synthetic PATH [shape]) [options]\n"
        "Serves N requests with the same prompt through a Llama model on libbinv-cl with\n"
        "continuous batching, under the adaptive and the invariant schedule, and counts\n"
        "distinct completions (docs/llm.md).\n"
        "  --model PATH            llama2.c checkpoint (float32, legacy format)\n"
        "  --synthetic PATH        write a seeded synthetic checkpoint to PATH and use it;\n"
        "                          shape: --dim 2048 --hidden 5632 --layers 16 --heads 32\n"
        "                          --kv-heads 8 --vocab 32000 --seq-len 1024 (defaults),\n"
        "                          --weights-seed S, --shared-classifier; --write-only\n"
        "  --device gpu|cpu|P:D    OpenCL device (default: BINV_DEVICE, else first GPU);\n"
        "  --list                  list devices\n"
        "  --dtype f32|f16|bf16    weights and activations (default f32)\n"
        "  --requests N (1000)  --tokens T (32)  --prompt IDS (\"1,403,407,261,378,430,259,\n"
        "                          270,395,411\")  --max-batch B (32)  --chunk C (4)\n"
        "  --budget MIN:MAX        per-step token budget (default B/2 : B+C)\n"
        "  --arrival-gap G (0.5)   mean steps between arrivals;  --seed S (1): schedule\n"
        "  --temperature t (0 = greedy)  --top-k k  --top-p p  --sample-seed s (42)\n"
        "  --per-request-seed      seed + request index (default: the same seed for all)\n"
        "  --pages N               KV pages per layer (default B * ceil((P+T-1)/16))\n"
        "  --schedule adaptive|invariant|both (both)\n"
        "  --check N               first compare N greedy tokens with the CPU reference\n"
        "  --report FILE           write a markdown report section\n"
        "  --cache-dir DIR         libbinv program-binary cache\n"
        "  --native                binv_options.path = BINV_PATH_NATIVE (tensor-core bf16/f16\n"
        "                          GEMM on NVIDIA GPUs; portable elsewhere)\n"
        "  --parity                after serving, recompute every sampled token's log-prob\n"
        "                          as a trainer does (whole sequences, 3 packed per forward\n"
        "                          pass, reverse order) and count those not bitwise equal\n",
        argv0);
    return status;
}

static int usage(const char *argv0) { return usage_to(stderr, 2, argv0); }

static int parse(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->shape = (llm_config){2048, 5632, 16, 32, 8, 32000, 1024, 0};
    o->weights_seed = 1234;
    o->dtype = BINV_DTYPE_F32;
    o->prompt_len = llm_parse_ids("1,403,407,261,378,430,259,270,395,411", o->prompt, MAX_PROMPT);
    o->requests = 1000, o->tokens = 32, o->max_batch = 32, o->chunk = 4;
    o->arrival_gap = 0.5, o->seed = 1, o->sample_seed = 42;
    o->sampler = (llm_sampler){0.0f, 0, 1.0f};
    o->run_adaptive = o->run_invariant = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (++i, 1))
        if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--write-only")) o->write_only = 1;
        else if (!strcmp(a, "--per-request-seed")) o->per_request_seed = 1;
        else if (!strcmp(a, "--shared-classifier")) o->shape.shared_classifier = 1;
        else if (!strcmp(a, "--native")) o->native = 1;
        else if (!strcmp(a, "--parity")) o->parity = 3;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return -1;
        else if (ARG("--device")) o->device = v;
        else if (ARG("--model")) o->model = v;
        else if (ARG("--synthetic")) o->synthetic = v;
        else if (ARG("--report")) o->report = v;
        else if (ARG("--cache-dir")) o->cache_dir = v;
        else if (ARG("--dim")) o->shape.dim = atoi(v);
        else if (ARG("--hidden")) o->shape.hidden_dim = atoi(v);
        else if (ARG("--layers")) o->shape.n_layers = atoi(v);
        else if (ARG("--heads")) o->shape.n_heads = atoi(v);
        else if (ARG("--kv-heads")) o->shape.n_kv_heads = atoi(v);
        else if (ARG("--vocab")) o->shape.vocab_size = atoi(v);
        else if (ARG("--seq-len")) o->shape.seq_len = atoi(v);
        else if (ARG("--weights-seed")) o->weights_seed = strtoull(v, NULL, 10);
        else if (ARG("--dtype")) {
            if (!strcmp(v, "f32")) o->dtype = BINV_DTYPE_F32;
            else if (!strcmp(v, "f16")) o->dtype = BINV_DTYPE_F16;
            else if (!strcmp(v, "bf16")) o->dtype = BINV_DTYPE_BF16;
            else return -1;
        } else if (ARG("--prompt")) {
            if ((o->prompt_len = llm_parse_ids(v, o->prompt, MAX_PROMPT)) < 1) {
                fprintf(stderr, "error: --prompt: expected comma-separated token ids\n");
                return -1;
            }
        } else if (ARG("--requests")) o->requests = atoi(v);
        else if (ARG("--tokens")) o->tokens = atoi(v);
        else if (ARG("--max-batch")) o->max_batch = atoi(v);
        else if (ARG("--chunk")) o->chunk = atoi(v);
        else if (ARG("--budget")) {
            if (sscanf(v, "%d:%d", &o->budget_min, &o->budget_max) != 2 || o->budget_min < 1 ||
                o->budget_max < o->budget_min) {
                fprintf(stderr, "error: --budget MIN:MAX with 1 <= MIN <= MAX\n");
                return -1;
            }
        } else if (ARG("--arrival-gap")) o->arrival_gap = atof(v);
        else if (ARG("--seed")) o->seed = strtoull(v, NULL, 10);
        else if (ARG("--sample-seed")) o->sample_seed = strtoull(v, NULL, 10);
        else if (ARG("--temperature")) o->sampler.temperature = (float)atof(v);
        else if (ARG("--top-k")) o->sampler.top_k = atoi(v);
        else if (ARG("--top-p")) o->sampler.top_p = (float)atof(v);
        else if (ARG("--pages")) o->pages = strtoull(v, NULL, 10);
        else if (ARG("--check")) o->check = atoi(v);
        else if (ARG("--schedule")) {
            o->run_adaptive = !strcmp(v, "adaptive") || !strcmp(v, "both");
            o->run_invariant = !strcmp(v, "invariant") || !strcmp(v, "both");
            if (!o->run_adaptive && !o->run_invariant) return -1;
        } else {
            fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
            return -1;
        }
#undef ARG
    }
    if (o->requests < 1 || o->tokens < 1 || o->max_batch < 1 || o->chunk < 1 ||
        !(o->arrival_gap >= 0) || o->sampler.temperature < 0 || o->sampler.top_k < 0 ||
        !(o->sampler.top_p > 0)) {
        fprintf(stderr, "error: requests, tokens, max-batch, chunk >= 1; arrival-gap, "
                        "temperature, top-k >= 0; top-p > 0\n");
        return -1;
    }
    if (!o->budget_min) {
        o->budget_min = o->max_batch / 2 > 0 ? o->max_batch / 2 : 1;
        o->budget_max = o->max_batch + o->chunk;
    }
    return 0;
}

typedef struct sched_result {
    const char *name;
    int ran;
    llm_serve_result res;
    int *solo; /* the completion of the request served alone */
    llm_divergence div;
    double max_dlogit; /* max |logit - logit alone| over rows whose prefix equals the alone run's */
    double min_margin; /* smallest top-1 minus top-2 logit of the alone run */
    double *logprobs;  /* requests x tokens: each sampled token's log-prob at sampling time */
    int parity_ran;
    llm_parity_result parity;
} sched_result;

/* Logits of the request alone, and how far the served requests' logits move
 * from them while their tokens still agree. */
/* "none" or the first diverging token index (and the mean). */
static void divergence_label(const sched_result *r, char *buf, size_t n) {
    if (r->div.first_divergence < 0) snprintf(buf, n, "none");
    else snprintf(buf, n, "%d (mean %.1f)", r->div.first_divergence, r->div.mean_divergence);
}

typedef struct tracker {
    int V, recording;
    float *solo;        /* tokens x V */
    const int *solo_tokens;
    unsigned char *diverged;
    double max_diff;
    double *logprobs; /* NULL, or requests x tokens */
    int tokens;
} tracker;

static void on_sample(void *user, int req, int idx, const float *l, int tok) {
    tracker *t = user;
    float *ref = t->solo + (size_t)idx * t->V;
    if (t->recording) {
        memcpy(ref, l, (size_t)t->V * sizeof(float));
        return;
    }
    if (t->logprobs) t->logprobs[(size_t)req * t->tokens + idx] = llm_logprob(l, t->V, tok);
    if (t->diverged[req]) return;
    for (int j = 0; j < t->V; j++) {
        const double d = fabs((double)l[j] - ref[j]);
        if (d > t->max_diff || d != d) t->max_diff = d;
    }
    if (tok != t->solo_tokens[idx]) t->diverged[req] = 1;
}

static binv_context *make_ctx(const hx_device *dev, binv_schedule s, const char *cache_dir,
                              int native) {
    binv_options opt = {.struct_size = sizeof opt, .schedule = s, .cache_dir = cache_dir,
                        .path = native ? BINV_PATH_NATIVE : BINV_PATH_PORTABLE};
    binv_context *c = NULL;
    binv_status st = binv_context_create(dev->context, dev->device, &opt, &c);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_context_create: %s: %s\n", binv_status_string(st),
                binv_context_last_error(NULL));
        return NULL;
    }
    if (native && binv_context_path(c) != BINV_PATH_NATIVE)
        printf("note: --native: the portable path runs (%s)\n", binv_context_last_error(c));
    return c;
}

static llm_serve_opts serve_opts(const options *o, const llm_model *m, int requests) {
    return (llm_serve_opts){requests, o->prompt, o->prompt_len, o->tokens, o->max_batch,
                            o->chunk, o->budget_min, o->budget_max, o->arrival_gap, o->seed,
                            o->sampler, o->sample_seed, o->per_request_seed, m->cfg.vocab_size,
                            NULL, NULL};
}

static llm_engine *make_engine(binv_context *ctx, const hx_device *dev, const llm_model *m,
                               const options *o) {
    const llm_engine_opts eo = {o->dtype, o->max_batch, o->budget_max,
                                o->prompt_len + o->tokens - 1, o->pages, o->seed ^ 0x5eedull};
    char err[2048];
    llm_engine *e = llm_engine_create(ctx, dev->context, dev->queue, m, &eo, err, sizeof err);
    if (!e) fprintf(stderr, "error: engine: %s\n", err);
    return e;
}

/* Greedy tokens of the engine against the CPU reference, one token a step. */
static int check_reference(const hx_device *dev, const llm_model *m, const options *o) {
    const int n = o->check, V = m->cfg.vocab_size;
    if (o->prompt_len + n - 1 > m->cfg.seq_len) {
        fprintf(stderr, "error: --check %d: prompt + tokens exceed seq_len\n", n);
        return -1;
    }
    binv_context *ctx = make_ctx(dev, BINV_SCHEDULE_INVARIANT, o->cache_dir, o->native);
    if (!ctx) return -1;
    options o1 = *o;
    o1.max_batch = 1;
    o1.budget_max = o->prompt_len;
    o1.tokens = n;
    llm_engine *e = make_engine(ctx, dev, m, &o1);
    llm_ref *r = llm_ref_create(m, 1);
    float *le = malloc((size_t)V * sizeof(float)), *lr = malloc((size_t)V * sizeof(float));
    int rc = -1, matched = 0, tok_e = 0, tok_r = 0;
    double maxdiff = 0;
    if (!e || !r || !le || !lr || llm_engine_seq_begin(e, 0, o->prompt_len + n - 1)) goto out;
    for (int t = 0; t < o->prompt_len; t++) llm_ref_forward(r, 0, o->prompt[t], t,
                                                           t == o->prompt_len - 1 ? lr : NULL);
    llm_work w = {0, 0, o->prompt_len, o->prompt, 1};
    int cur = 0;
    for (int i = 0; i < n; i++) {
        if (llm_engine_step(e, &w, 1, le)) {
            fprintf(stderr, "error: %s\n", llm_engine_error(e));
            goto out;
        }
        for (int j = 0; j < V; j++) {
            const double dd = fabs((double)le[j] - lr[j]);
            if (dd > maxdiff) maxdiff = dd;
        }
        tok_e = llm_sample(&(llm_sampler){0, 0, 1}, le, V, 0, 0, NULL);
        tok_r = llm_sample(&(llm_sampler){0, 0, 1}, lr, V, 0, 0, NULL);
        if (tok_e != tok_r) break;
        matched++;
        if (i + 1 == n) break;
        cur = tok_e;
        const int pos = o->prompt_len + i;
        w = (llm_work){0, pos, 1, &cur, 1};
        llm_ref_forward(r, 0, cur, pos, lr);
    }
    printf("reference check (%s): %d/%d greedy tokens equal to the CPU reference; "
           "max |logit diff| %.3g%s\n",
           hx_dtype_name(o->dtype), matched, n, maxdiff,
           matched < n ? " (FIRST MISMATCH)" : "");
    if (matched < n) printf("  token %d: engine %d, reference %d\n", matched, tok_e, tok_r);
    rc = 0;
out:
    free(le), free(lr);
    llm_ref_destroy(r);
    llm_engine_destroy(e);
    binv_context_destroy(ctx);
    return rc;
}

/* The trainer's recompute of every sampled token's log-prob (llm_parity) on
 * an engine of its own: o->parity whole sequences a step. */
static int run_parity(binv_context *ctx, const hx_device *dev, const llm_model *m,
                      const options *o, const llm_serve_opts *so, sched_result *out) {
    const int len = o->prompt_len + o->tokens - 1;
    const llm_engine_opts eo = {o->dtype, o->parity, o->parity * len, len, 0, o->seed ^ 0x7a11ull};
    char err[2048];
    llm_engine *e = llm_engine_create(ctx, dev->context, dev->queue, m, &eo, err, sizeof err);
    if (!e || llm_parity(e, so, &out->res, out->logprobs, o->parity, &out->parity, err,
                         sizeof err)) {
        fprintf(stderr, "error: parity: %s\n", err);
        llm_engine_destroy(e);
        return -1;
    }
    llm_engine_destroy(e);
    out->parity_ran = 1;
    return 0;
}

static int run_schedule(const hx_device *dev, const llm_model *m, const options *o,
                        binv_schedule s, sched_result *out) {
    binv_context *ctx = make_ctx(dev, s, o->cache_dir, o->native);
    if (!ctx) return -1;
    llm_engine *e = make_engine(ctx, dev, m, o);
    int rc = -1;
    char err[2048];
    tracker tk = {0};
    if (!e) goto out;
    llm_backend b = llm_engine_backend(e);
    const int V = m->cfg.vocab_size;
    tk.V = V, tk.recording = 1;
    tk.solo = malloc((size_t)o->tokens * V * sizeof(float));
    tk.diverged = calloc((size_t)o->requests, 1);
    out->solo = malloc((size_t)o->tokens * sizeof(int));
    if (!tk.solo || !tk.diverged || !out->solo) {
        fprintf(stderr, "error: out of host memory\n");
        goto out;
    }
    /* The request alone (also builds the kernels before the timed run). */
    llm_serve_opts so = serve_opts(o, m, 1);
    so.on_sample = on_sample, so.user = &tk;
    llm_serve_result solo;
    if (llm_serve(&b, &so, &solo, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    memcpy(out->solo, solo.tokens, (size_t)o->tokens * sizeof(int));
    llm_serve_result_free(&solo);
    out->min_margin = INFINITY;
    for (int i = 0; i < o->tokens; i++) {
        const float *l = tk.solo + (size_t)i * V;
        double a = -INFINITY, b2 = -INFINITY;
        for (int j = 0; j < V; j++) {
            if (l[j] > a) b2 = a, a = l[j];
            else if (l[j] > b2) b2 = l[j];
        }
        if (a - b2 < out->min_margin) out->min_margin = a - b2;
    }
    tk.recording = 0, tk.solo_tokens = out->solo;
    if (o->parity) {
        if (!(out->logprobs = malloc((size_t)o->requests * o->tokens * sizeof(double)))) {
            fprintf(stderr, "error: out of host memory\n");
            goto out;
        }
        tk.logprobs = out->logprobs, tk.tokens = o->tokens;
    }
    so = serve_opts(o, m, o->requests);
    so.on_sample = on_sample, so.user = &tk;
    if (llm_serve(&b, &so, &out->res, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    out->div = llm_compare(&out->res, out->solo);
    out->max_dlogit = tk.max_diff;
    printf("%s: %d requests served in %.1f s (%ld steps)\n", out->name, o->requests,
           out->res.seconds, out->res.steps);
    out->ran = 1;
    rc = o->parity ? run_parity(ctx, dev, m, o, &so, out) : 0;
out:
    free(tk.solo), free(tk.diverged);
    llm_engine_destroy(e);
    binv_context_destroy(ctx);
    return rc;
}

/* One schedule's row of the results table: markdown for the report, aligned
 * columns for stdout. */
static void result_row(FILE *f, const sched_result *r, int markdown) {
    const llm_serve_result *s = &r->res;
    const llm_divergence *d = &r->div;
    char fd[32];
    divergence_label(r, fd, sizeof fd);
    const double gen = (double)s->n_requests * s->gen_tokens / s->seconds;
    const double all = (double)s->tokens_processed / s->seconds;
    if (markdown)
        fprintf(f, "| %s | %d | %d | %d | %d / %d | %s | %.3g | %.3g | %ld | %ld | %.1f | %.1f |\n",
                r->name, d->distinct_completions, d->modal_count, d->distinct_logit_streams,
                d->differing_requests, s->n_requests, fd, r->max_dlogit, r->min_margin, s->steps,
                s->distinct_compositions, gen, all);
    else
        fprintf(f, "%-10s %8d %9d %7d %8d %11d %17s %10.3g %7ld %7ld %10.1f %10.1f\n", r->name,
                s->n_requests, d->distinct_completions, d->modal_count, d->distinct_logit_streams,
                d->differing_requests, fd, r->max_dlogit, s->steps, s->distinct_compositions, gen,
                all);
}

static void print_tokens(FILE *f, const int *t, int n) {
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", t[i]);
}

static void write_report(const options *o, const llm_model *m, const hx_device *dev,
                         const sched_result *r, int nr) {
    FILE *f = fopen(o->report, "w");
    if (!f) {
        perror(o->report);
        return;
    }
    const llm_config *c = &m->cfg;
    fprintf(f, "## LLM serving: distinct completions of %d identical requests\n\n", o->requests);
    fprintf(f, "Device: **%s** (%s). libbinv-cl %s. Model: `%s` (dim %d, hidden %d, %d layers, "
               "%d heads / %d kv heads, vocab %d%s), %s.\n\n",
            dev->name, dev->platform_name, binv_version_string(),
            o->model ? o->model : o->synthetic, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
            c->n_kv_heads, c->vocab_size, o->synthetic ? ", synthetic weights" : "",
            hx_dtype_name(o->dtype));
    fprintf(f, "Prompt of %d tokens (`", o->prompt_len);
    print_tokens(f, o->prompt, o->prompt_len);
    fprintf(f, "`), %d tokens generated per request, ", o->tokens);
    if (o->sampler.temperature > 0)
        fprintf(f, "sampling (temperature %g, top-k %d, top-p %g, seed %llu%s)", o->sampler.temperature,
                o->sampler.top_k, o->sampler.top_p, (unsigned long long)o->sample_seed,
                o->per_request_seed ? " + request index" : ", the same for every request");
    else
        fprintf(f, "greedy");
    fprintf(f, ". Continuous batching: at most %d sequences, prompts prefilled in chunks of %d, "
               "random token budget %d..%d per step, arrivals every %.2g steps on average "
               "(seed %llu).\n\n",
            o->max_batch, o->chunk, o->budget_min, o->budget_max, o->arrival_gap,
            (unsigned long long)o->seed);
    fprintf(f, "| schedule | distinct completions | most common | distinct logit streams | "
               "requests ≠ alone | first divergence (token) | max \\|Δlogit\\| | smallest margin "
               "alone | steps | batch shapes | generated tok/s | processed tok/s |\n"
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < nr; i++)
        if (r[i].ran) result_row(f, &r[i], 1);
    for (int i = 0; i < nr; i++)
        if (r[i].parity_ran)
            fprintf(f, "\nTrainer/sampler parity, %s: **%ld of %ld** sampled tokens' log-probs "
                       "differ bitwise from a trainer's recompute (whole sequences, %d per forward "
                       "pass, reverse order); max |difference| %.3g.\n",
                    r[i].name, r[i].parity.differing, r[i].parity.tokens, r[i].parity.pack,
                    r[i].parity.max_abs_diff);
    fprintf(f, "\n\"Alone\": the same request served by itself with the same schedule. A logit "
               "stream is the bits of every logits row a request sampled from. Max |Δlogit|: "
               "largest difference from the alone run's logits while the tokens still agree; "
               "smallest margin: the alone run's smallest gap between its two largest logits "
               "(a perturbation must exceed it to flip a greedy token).\n");
    fclose(f);
}

/* The table of both schedules on stdout, and each one's completion alone. */
static void print_summary(const options *o, const sched_result *r, int nr) {
    printf("\n%-10s %8s %9s %7s %8s %11s %17s %10s %7s %7s %10s %10s\n", "schedule",
           "requests", "distinct", "most", "logit", "differ from", "first divergence", "max",
           "steps", "shapes", "gen tok/s", "all tok/s");
    printf("%-10s %8s %9s %7s %8s %11s %17s %10s %7s %7s %10s %10s\n", "", "",
           "outputs", "common", "streams", "alone", "(token index)", "|dlogit|", "", "", "",
           "");
    for (int i = 0; i < nr; i++)
        if (r[i].ran) result_row(stdout, &r[i], 0);
    for (int i = 0; i < nr; i++)
        if (r[i].ran) {
            printf("%s, alone (smallest top-2 logit margin %.3g): ", r[i].name,
                   r[i].min_margin);
            print_tokens(stdout, r[i].solo, o->tokens < 40 ? o->tokens : 40);
            printf("%s\n", o->tokens > 40 ? ",..." : "");
        }
    if (r[0].ran && r[1].ran) {
        const int same = !memcmp(r[0].solo, r[1].solo, (size_t)o->tokens * sizeof(int));
        printf("alone, adaptive %s invariant\n", same ? "==" : "!=");
    }
    for (int i = 0; i < nr; i++)
        if (r[i].parity_ran)
            printf("parity, %s: %ld of %ld sampled tokens' log-probs differ from the trainer's "
                   "recompute (max |diff| %.3g; %d sequences per trainer step, %ld steps)\n",
                   r[i].name, r[i].parity.differing, r[i].parity.tokens,
                   r[i].parity.max_abs_diff, r[i].parity.pack, r[i].parity.steps);
}

int main(int argc, char **argv) {
    options o;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage_to(stdout, 0, argv[0]);
    if (parse(argc, argv, &o)) return usage(argv[0]);
    if (o.list) {
        hx_device_list(stdout);
        return 0;
    }
    if (!o.model && !o.synthetic) {
        fprintf(stderr, "error: give --model PATH or --synthetic PATH\n");
        return usage(argv[0]);
    }
    char err[2048];
    if (o.synthetic) {
        const double t0 = hx_now_s();
        if (llm_synthetic_write(o.synthetic, &o.shape, o.weights_seed, err, sizeof err)) {
            fprintf(stderr, "error: --synthetic: %s\n", err);
            return 1;
        }
        printf("wrote %s (%.1f MB) in %.1f s\n", o.synthetic,
               (double)llm_checkpoint_bytes(&o.shape) / 1e6, hx_now_s() - t0);
        if (o.write_only) return 0;
        if (!o.model) o.model = o.synthetic;
    }
    llm_model m;
    if (llm_model_load(o.model, &m, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    const llm_config *c = &m.cfg;
    printf("model: %s: dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d%s, "
           "seq_len %d\n",
           o.model, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
           c->shared_classifier ? "" : " (separate classifier)", c->seq_len);
    for (int i = 0; i < o.prompt_len; i++)
        if (o.prompt[i] >= c->vocab_size) {
            fprintf(stderr, "error: prompt token %d is outside the vocabulary (%d)\n", o.prompt[i],
                    c->vocab_size);
            llm_model_free(&m);
            return 1;
        }
    if (o.prompt_len + o.tokens - 1 > c->seq_len) {
        fprintf(stderr, "error: prompt (%d) + tokens (%d) exceed the model's seq_len (%d)\n",
                o.prompt_len, o.tokens, c->seq_len);
        llm_model_free(&m);
        return 1;
    }
    hx_device dev;
    if (hx_device_open(o.device, &dev)) {
        llm_model_free(&m);
        return 1;
    }
    printf("device: %s (%s); dtype %s\n", dev.name, dev.platform_name,
           hx_dtype_name(o.dtype));
    int rc = 0;
    if (o.check > 0 && check_reference(&dev, &m, &o)) rc = 1;
    sched_result r[2] = {{.name = "adaptive"}, {.name = "invariant"}};
    printf("serving %d requests x %d tokens (prompt %d tokens, max batch %d, chunk %d, budget "
           "%d..%d, %s)\n",
           o.requests, o.tokens, o.prompt_len, o.max_batch, o.chunk, o.budget_min, o.budget_max,
           o.sampler.temperature > 0 ? "sampling" : "greedy");
    if (!rc && o.run_adaptive && run_schedule(&dev, &m, &o, BINV_SCHEDULE_ADAPTIVE, &r[0])) rc = 1;
    if (!rc && o.run_invariant && run_schedule(&dev, &m, &o, BINV_SCHEDULE_INVARIANT, &r[1])) rc = 1;
    if (!rc) {
        print_summary(&o, r, 2);
        if (o.report) {
            write_report(&o, &m, &dev, r, 2);
            printf("report section: %s\n", o.report);
        }
    }
    for (int i = 0; i < 2; i++) {
        free(r[i].solo);
        free(r[i].logprobs);
        llm_serve_result_free(&r[i].res);
    }
    hx_device_close(&dev);
    llm_model_free(&m);
    return rc;
}
