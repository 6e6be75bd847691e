/* attention over the paged KV cache, and rope: sizes, page tables, references. */
#include <math.h>

#include "harness.h"

double hx_attention_flops(size_t heads, size_t head_dim, size_t seqs, size_t ctx, size_t qlen) {
    return 4.0 * (double)heads * (double)head_dim * (double)seqs *
           ((double)ctx * (ctx + 1) / 2 - (double)(ctx - qlen) * (ctx - qlen + 1) / 2);
}

void hx_attention_shuffled_pages(cl_uint *table, size_t pages, uint64_t *seed) {
    for (size_t i = 0; i < pages; i++) table[i] = (cl_uint)i;
    for (size_t i = pages - 1; pages && i > 0; i--) {
        size_t j = (size_t)(hx_rng_next(seed) % (i + 1));
        cl_uint t = table[i];
        table[i] = table[j];
        table[j] = t;
    }
}

void hx_attention_ref(binv_dtype dt, size_t head_dim, double scale, const void *q, size_t q_at,
                      const void *k, const void *v, size_t kv_at, size_t kv_ld, size_t nkeys,
                      double *out, double *work) {
    double m = -INFINITY;
    for (size_t j = 0; j < nkeys; j++) {
        double dot = 0;
        for (size_t d = 0; d < head_dim; d++)
            dot += (double)hx_load(dt, q, q_at + d) * (double)hx_load(dt, k, kv_at + j * kv_ld + d);
        work[j] = dot * scale;
        if (work[j] > m) m = work[j];
    }
    double l = 0;
    for (size_t j = 0; j < nkeys; j++) l += exp(work[j] - m);
    for (size_t d = 0; d < head_dim; d++) {
        double acc = 0;
        for (size_t j = 0; j < nkeys; j++)
            acc += exp(work[j] - m) * (double)hx_load(dt, v, kv_at + j * kv_ld + d);
        out[d] = acc / l;
    }
}

void hx_rope_ref(double x0, double x1, double a, double *y0, double *y1) {
    *y0 = x0 * cos(a) - x1 * sin(a);
    *y1 = x0 * sin(a) + x1 * cos(a);
}
