/* The CPU reference forward pass: llama2.c's transformer, one token of one
 * sequence at a time, with double activations and double accumulation over
 * the float32 weights.  Slow and simple: it checks the engine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"

struct llm_ref {
    const llm_model *m;
    int max_seqs;
    double *kc, *vc; /* [seq][layer][pos][kv_dim] */
    double *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2, *logits;
};

llm_ref *llm_ref_create(const llm_model *m, int max_seqs) {
    const llm_config *c = &m->cfg;
    llm_ref *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->m = m;
    r->max_seqs = max_seqs;
    const size_t cache = (size_t)max_seqs * c->n_layers * c->seq_len * llm_kv_dim(c);
    r->kc = malloc(cache * sizeof(double));
    r->vc = malloc(cache * sizeof(double));
    r->x = malloc(c->dim * sizeof(double));
    r->xb = malloc(c->dim * sizeof(double));
    r->xb2 = malloc(c->dim * sizeof(double));
    r->q = malloc(c->dim * sizeof(double));
    r->k = malloc(llm_kv_dim(c) * sizeof(double));
    r->v = malloc(llm_kv_dim(c) * sizeof(double));
    r->att = malloc(c->seq_len * sizeof(double));
    r->hb = malloc(c->hidden_dim * sizeof(double));
    r->hb2 = malloc(c->hidden_dim * sizeof(double));
    r->logits = malloc(c->vocab_size * sizeof(double));
    if (!r->kc || !r->vc || !r->x || !r->xb || !r->xb2 || !r->q || !r->k || !r->v || !r->att ||
        !r->hb || !r->hb2 || !r->logits) {
        llm_ref_destroy(r);
        return NULL;
    }
    return r;
}

void llm_ref_destroy(llm_ref *r) {
    if (!r) return;
    free(r->kc), free(r->vc), free(r->x), free(r->xb), free(r->xb2), free(r->q), free(r->k);
    free(r->v), free(r->att), free(r->hb), free(r->hb2), free(r->logits);
    free(r);
}

static void rmsnorm(double *o, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double s = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) o[i] = w[i] * (s * x[i]);
}

/* o[n] = W[n, k] x[k] */
static void matvec(double *o, const double *x, const float *w, int n, int k) {
    for (int i = 0; i < n; i++) {
        const float *row = w + (size_t)i * k;
        double s = 0;
        for (int j = 0; j < k; j++) s += (double)row[j] * x[j];
        o[i] = s;
    }
}

/* llama2.c's RoPE: pairs (2i, 2i+1) of each head rotated by pos * theta^(-2i/hs). */
static void rope(double *x, int heads, int hs, int pos) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < hs / 2; i++) {
            const double f = pow(10000.0, -2.0 * i / hs), a = pos * f;
            const double c = cos(a), s = sin(a);
            double *p = x + h * hs + 2 * i;
            const double x0 = p[0], x1 = p[1];
            p[0] = x0 * c - x1 * s;
            p[1] = x0 * s + x1 * c;
        }
}

void llm_ref_forward(llm_ref *r, int seq, int token, int pos, float *logits) {
    const llm_model *m = r->m;
    const llm_config *c = &m->cfg;
    const int dim = c->dim, hd = c->hidden_dim, hs = llm_head_size(c), kvd = llm_kv_dim(c);
    const int grp = c->n_heads / c->n_kv_heads;
    for (int i = 0; i < dim; i++) r->x[i] = m->tok_emb[(size_t)token * dim + i];
    for (int l = 0; l < c->n_layers; l++) {
        const size_t lo = ((size_t)seq * c->n_layers + l) * c->seq_len * kvd;
        double *kc = r->kc + lo, *vc = r->vc + lo;
        rmsnorm(r->xb, r->x, m->rms_att + (size_t)l * dim, dim);
        matvec(r->q, r->xb, m->wq + (size_t)l * dim * dim, dim, dim);
        matvec(r->k, r->xb, m->wk + (size_t)l * kvd * dim, kvd, dim);
        matvec(r->v, r->xb, m->wv + (size_t)l * kvd * dim, kvd, dim);
        rope(r->q, c->n_heads, hs, pos);
        rope(r->k, c->n_kv_heads, hs, pos);
        memcpy(kc + (size_t)pos * kvd, r->k, kvd * sizeof(double));
        memcpy(vc + (size_t)pos * kvd, r->v, kvd * sizeof(double));
        const double scale = 1.0 / sqrt((double)hs);
        for (int h = 0; h < c->n_heads; h++) {
            const double *q = r->q + h * hs;
            const int kvh = h / grp;
            double mx = -INFINITY;
            for (int t = 0; t <= pos; t++) {
                const double *k = kc + (size_t)t * kvd + kvh * hs;
                double s = 0;
                for (int i = 0; i < hs; i++) s += q[i] * k[i];
                r->att[t] = s * scale;
                if (r->att[t] > mx) mx = r->att[t];
            }
            double sum = 0;
            for (int t = 0; t <= pos; t++) sum += (r->att[t] = exp(r->att[t] - mx));
            double *o = r->xb2 + h * hs;
            for (int i = 0; i < hs; i++) o[i] = 0;
            for (int t = 0; t <= pos; t++) {
                const double *v = vc + (size_t)t * kvd + kvh * hs;
                const double a = r->att[t] / sum;
                for (int i = 0; i < hs; i++) o[i] += a * v[i];
            }
        }
        matvec(r->xb, r->xb2, m->wo + (size_t)l * dim * dim, dim, dim);
        for (int i = 0; i < dim; i++) r->x[i] += r->xb[i];
        rmsnorm(r->xb, r->x, m->rms_ffn + (size_t)l * dim, dim);
        matvec(r->hb, r->xb, m->w1 + (size_t)l * hd * dim, hd, dim);
        matvec(r->hb2, r->xb, m->w3 + (size_t)l * hd * dim, hd, dim);
        for (int i = 0; i < hd; i++) r->hb[i] = r->hb[i] / (1.0 + exp(-r->hb[i])) * r->hb2[i];
        matvec(r->xb, r->hb, m->w2 + (size_t)l * dim * hd, dim, hd);
        for (int i = 0; i < dim; i++) r->x[i] += r->xb[i];
    }
    rmsnorm(r->xb, r->x, m->rms_final, dim);
    if (!logits) return;
    matvec(r->logits, r->xb, m->wcls, c->vocab_size, dim);
    for (int i = 0; i < c->vocab_size; i++) logits[i] = (float)r->logits[i];
}

/* ---- backend adaptor: the reference as a serving backend (slot = seq) ------- */

typedef struct ref_backend {
    llm_ref *r;
    int *len;
    char err[256];
} ref_backend;

static int rb_begin(void *s, int slot, int max_len) {
    ref_backend *b = s;
    if (slot < 0 || slot >= b->r->max_seqs || max_len > b->r->m->cfg.seq_len) {
        snprintf(b->err, sizeof b->err, "reference: slot %d / length %d out of range", slot,
                 max_len);
        return -1;
    }
    b->len[slot] = 0;
    return 0;
}

static void rb_end(void *s, int slot) { (void)s, (void)slot; }

static int rb_step(void *s, const llm_work *w, int n, float *logits) {
    ref_backend *b = s;
    int row = 0;
    for (int i = 0; i < n; i++) {
        if (w[i].pos0 != b->len[w[i].slot]) {
            snprintf(b->err, sizeof b->err, "reference: slot %d fed out of order", w[i].slot);
            return -1;
        }
        for (int t = 0; t < w[i].n; t++) {
            const int last = t == w[i].n - 1 && w[i].want_logits;
            llm_ref_forward(b->r, w[i].slot, w[i].tokens[t], w[i].pos0 + t,
                            last ? logits + (size_t)row * b->r->m->cfg.vocab_size : NULL);
        }
        b->len[w[i].slot] += w[i].n;
        row += w[i].want_logits;
    }
    return 0;
}

static const char *rb_error(void *s) { return ((ref_backend *)s)->err; }

llm_backend llm_ref_backend(llm_ref *r) {
    ref_backend *b = calloc(1, sizeof *b);
    if (b) b->len = calloc((size_t)r->max_seqs, sizeof(int));
    if (b && !b->len) {
        free(b);
        b = NULL;
    }
    if (b) b->r = r;
    return (llm_backend){b, rb_begin, rb_end, rb_step, rb_error};
}

void llm_ref_backend_free(llm_backend *b) {
    ref_backend *rb = b->self;
    if (rb) free(rb->len);
    free(rb);
    b->self = NULL;
}
