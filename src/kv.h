/* The KV batch as src/kv.c and src/attention.c share it, and the argument
 * checks of binv_kv_append, binv_rope and binv_attention.  Not installed. */
#ifndef BINV_KV_H
#define BINV_KV_H

#include "internal.h"

#define ATTN_CONFIGS 4        /* work lists a batch keeps (attention.c) */
#define ATTN_MAX_HEAD_DIM 256

/* A work list for one (tokens per group, split length) pair, built lazily. */
typedef struct attn_config {
    cl_uint tb, split_chunks;
    cl_mem work, part_base;
    size_t nwork, records; /* work items; split states (per head) */
} attn_config;

struct binv_kv_batch {
    binv_context *ctx;
    size_t num_pages, num_seqs, num_tokens, max_pages;
    cl_uint *q_lens, *ctx_lens; /* host copies */
    cl_uint max_pos;           /* largest position of a new token */
    /* device: positions[T] | token_seq[T] | ctx_lens[S] | page_table[S*max_pages] */
    cl_mem meta;
    size_t meta_words;
    cl_uint ctx_off, pt_off;
    pthread_mutex_t lock; /* guards configs */
    attn_config configs[ATTN_CONFIGS];
    int nconfigs;
};

/* Checks shared by binv_kv_append and binv_attention.  `pools` is how the
 * call uses the K and V pools (written by binv_kv_append, read by
 * binv_attention); vk, vv and vmeta receive the views of the pools and of the
 * batch's metadata (read by both), for the callers' overlap checks. */
binv_status binv_kv_check_cache(binv_context *ctx, const char *fn, const binv_kv_cache *c,
                                const binv_kv_batch *b, int pools, binv_view *vk, binv_view *vv,
                                binv_view *vmeta);
/* A token-row matrix argument: tokens x width elements, stride ld; *ext
 * receives its extent in elements. */
binv_status binv_kv_check_rows(binv_context *ctx, const char *fn, const char *what, cl_mem m,
                               size_t off, size_t ld, size_t tokens, size_t width, size_t es,
                               size_t *ext);
/* binv_rope's dimension and theta checks (binv_rope, binv_kv_append_rope):
 * head_dim even, 2 .. 0xffff; heads 1 .. 0xffff; tokens < 2^31; theta > 1
 * finite. */
binv_status binv_rope_check(binv_context *ctx, const char *fn, size_t tokens, size_t heads,
                            size_t head_dim, float theta);
/* The frequency table theta^(-2i/head_dim), i < head_dim/2, of the context
 * (src/attention.c), retained for the caller: release it after the last
 * enqueue that uses it. */
binv_status binv_rope_freq(binv_context *ctx, float theta, size_t head_dim, cl_mem *out);
/* The start of every call here: clears the message and *ev, checks the queue
 * and the wait list. */
binv_status binv_kv_entry(binv_context *ctx, cl_command_queue queue, cl_uint n, const cl_event *w,
                          cl_event *ev);

#endif
