/* The paged KV cache's batches (binv_kv_batch_*), binv_kv_append and its
 * RoPE fusions (binv_kv_append_rope, binv_kv_append_rope_q), with
 * the argument checks binv_attention shares.  Kernel: cl/attention.cl
 * (attn_append, attn_append_rope); the cache layout: include/binv/binv.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kv.h"

size_t binv_kv_batch_tokens(const binv_kv_batch *b) { return b ? b->num_tokens : 0; }
cl_mem binv_kv_batch_positions(const binv_kv_batch *b) { return b ? b->meta : NULL; }

void binv_kv_batch_destroy(binv_kv_batch *b) {
    if (!b) return;
    for (int i = 0; i < b->nconfigs; i++) {
        clReleaseMemObject(b->configs[i].work);
        clReleaseMemObject(b->configs[i].part_base);
    }
    if (b->meta) clReleaseMemObject(b->meta);
    pthread_mutex_destroy(&b->lock);
    free(b->q_lens);
    free(b->ctx_lens);
    free(b);
}

/* Slots (page * PAGE + slot) written by the step must be distinct: two
 * sequences appending to one slot would race. */
static binv_status check_slots(binv_context *ctx, size_t num_pages, size_t num_seqs,
                               const cl_uint *q_lens, const cl_uint *ctx_lens,
                               const cl_uint *pt, size_t max_pages) {
    const size_t nslots = num_pages * BINV_KV_PAGE_SIZE;
    unsigned char *seen = calloc((nslots + 7) / 8, 1);
    BINV_RETURN_ERROR_ON(!seen, ctx, BINV_ERROR_OUT_OF_HOST_MEMORY,
                         "binv_kv_batch_create: out of host memory");
    for (size_t s = 0; s < num_seqs; s++)
        for (cl_uint p = ctx_lens[s] - q_lens[s]; p < ctx_lens[s]; p++) {
            const size_t slot = (size_t)pt[s * max_pages + p / BINV_KV_PAGE_SIZE] *
                                    BINV_KV_PAGE_SIZE + p % BINV_KV_PAGE_SIZE;
            if (seen[slot / 8] & (1u << (slot % 8))) {
                free(seen);
                return binv_set_error(ctx, BINV_ERROR_INVALID_VALUE,
                                      "binv_kv_batch_create: sequence %zu position %u writes a "
                                      "cache slot another new token of the step also writes",
                                      s, p);
            }
            seen[slot / 8] |= (unsigned char)(1u << (slot % 8));
        }
    free(seen);
    return BINV_SUCCESS;
}

/* Every sequence's lengths and page-table entries, then distinct slots;
 * the new tokens in all and the largest position of a new token. */
static binv_status check_seqs(binv_context *ctx, size_t num_pages, size_t num_seqs,
                              const cl_uint *q_lens, const cl_uint *ctx_lens,
                              const cl_uint *page_table, size_t max_pages, size_t *tokens_out,
                              cl_uint *max_pos_out) {
    const char *fn = "binv_kv_batch_create";
    size_t tokens = 0;
    cl_uint max_pos = 0;
    for (size_t s = 0; s < num_seqs; s++) {
        BINV_RETURN_ERROR_ON(q_lens[s] == 0, ctx, BINV_ERROR_INVALID_VALUE,
                             "%s: sequence %zu has q_len 0 (each needs >= 1 new token)", fn, s);
        BINV_RETURN_ERROR_ON(ctx_lens[s] < q_lens[s], ctx, BINV_ERROR_INVALID_VALUE,
                             "%s: sequence %zu: ctx_len %u < q_len %u", fn, s, ctx_lens[s],
                             q_lens[s]);
        BINV_RETURN_ERROR_ON((size_t)ctx_lens[s] > max_pages * BINV_KV_PAGE_SIZE, ctx,
                             BINV_ERROR_INVALID_VALUE,
                             "%s: sequence %zu: ctx_len %u is past its page table (%zu pages of "
                             "%d tokens)", fn, s, ctx_lens[s], max_pages, BINV_KV_PAGE_SIZE);
        const size_t used = (ctx_lens[s] + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE;
        for (size_t i = 0; i < used; i++)
            BINV_RETURN_ERROR_ON(page_table[s * max_pages + i] >= num_pages, ctx,
                                 BINV_ERROR_INVALID_VALUE,
                                 "%s: sequence %zu: page_table[%zu] = %u is past the pool of %zu "
                                 "pages", fn, s, i, page_table[s * max_pages + i], num_pages);
        tokens += q_lens[s];
        BINV_RETURN_ERROR_ON(tokens > 0x0fffffff, ctx, BINV_ERROR_INVALID_DIMENSION,
                             "%s: more than 2^28 new tokens", fn);
        if (ctx_lens[s] - 1 > max_pos) max_pos = ctx_lens[s] - 1;
    }
    *tokens_out = tokens;
    *max_pos_out = max_pos;
    return check_slots(ctx, num_pages, num_seqs, q_lens, ctx_lens, page_table, max_pages);
}

binv_status binv_kv_batch_create(binv_context *ctx, cl_command_queue queue, size_t num_pages,
                                 size_t num_seqs, const cl_uint *q_lens, const cl_uint *ctx_lens,
                                 const cl_uint *page_table, size_t max_pages,
                                 binv_kv_batch **out) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    binv_clear_error(ctx);
    const char *fn = "binv_kv_batch_create";
    BINV_RETURN_ERROR_ON(!out, ctx, BINV_ERROR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    binv_status st = binv_check_queue(ctx, queue);
    if (st != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(num_seqs && (!q_lens || !ctx_lens || !page_table), ctx,
                         BINV_ERROR_INVALID_ARGUMENT, "%s: q_lens, ctx_lens or page_table is NULL",
                         fn);
    BINV_RETURN_ERROR_ON(num_pages == 0 || max_pages == 0, ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: num_pages (%zu) and max_pages (%zu) must be >= 1", fn, num_pages,
                         max_pages);
    BINV_RETURN_ERROR_ON(num_pages > 0x0fffffff || max_pages > 0x0fffffff ||
                             num_seqs > 0x0fffffff ||
                             (num_seqs && max_pages > 0x7fffffff / num_seqs),
                         ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: num_pages=%zu num_seqs=%zu max_pages=%zu exceed the 32-bit indices "
                         "of the kernels", fn, num_pages, num_seqs, max_pages);
    size_t tokens = 0;
    cl_uint max_pos = 0;
    if ((st = check_seqs(ctx, num_pages, num_seqs, q_lens, ctx_lens, page_table, max_pages,
                         &tokens, &max_pos)) != BINV_SUCCESS)
        return st;

    /* tokens, num_seqs and max_pages are bounded above (2^28, 2^28, 2^31 /
     * num_seqs), so this fits a 64-bit size_t; checked for every size_t. */
    size_t words = 0, pt_words = 0, meta_bytes = 0;
    BINV_RETURN_ERROR_ON(!binv_mul_add_size(num_seqs, max_pages, 0, &pt_words) ||
                             !binv_mul_add_size(2, tokens, num_seqs, &words) ||
                             !binv_mul_add_size(1, words, pt_words, &words) ||
                             !binv_mul_add_size(1, words, 1, &words) ||
                             !binv_mul_add_size(words, sizeof(cl_uint), 0, &meta_bytes),
                         ctx, BINV_ERROR_INVALID_DIMENSION, "%s: the metadata size overflows", fn);
    binv_kv_batch *b = calloc(1, sizeof *b);
    cl_uint *meta = malloc(meta_bytes);
    if (b) {
        b->q_lens = malloc((num_seqs + 1) * sizeof(cl_uint));
        b->ctx_lens = malloc((num_seqs + 1) * sizeof(cl_uint));
    }
    if (!b || !meta || !b->q_lens || !b->ctx_lens) {
        free(meta);
        if (b) {
            free(b->q_lens);
            free(b->ctx_lens);
        }
        free(b);
        return binv_set_error(ctx, BINV_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory", fn);
    }
    b->ctx = ctx;
    b->num_pages = num_pages;
    b->num_seqs = num_seqs;
    b->num_tokens = tokens;
    b->max_pages = max_pages;
    b->max_pos = max_pos;
    b->meta_words = words;
    b->ctx_off = (cl_uint)(2 * tokens);
    b->pt_off = (cl_uint)(2 * tokens + num_seqs);
    if (num_seqs) {
        memcpy(b->q_lens, q_lens, num_seqs * sizeof(cl_uint));
        memcpy(b->ctx_lens, ctx_lens, num_seqs * sizeof(cl_uint));
    }
    size_t t = 0;
    for (size_t s = 0; s < num_seqs; s++)
        for (cl_uint i = 0; i < q_lens[s]; i++, t++) {
            meta[t] = ctx_lens[s] - q_lens[s] + i;
            meta[tokens + t] = (cl_uint)s;
        }
    for (size_t s = 0; s < num_seqs; s++) meta[b->ctx_off + s] = ctx_lens[s];
    if (num_seqs)
        memcpy(meta + b->pt_off, page_table, num_seqs * max_pages * sizeof(cl_uint));
    meta[words - 1] = 0;
    pthread_mutex_init(&b->lock, NULL);
    cl_int err;
    /* COPY_HOST_PTR: copied before clCreateBuffer returns, no queue work. */
    b->meta = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                             words * sizeof(cl_uint), meta, &err);
    free(meta);
    if (err != CL_SUCCESS) {
        b->meta = NULL;
        binv_kv_batch_destroy(b);
        return binv_set_error(ctx, err, "%s: clCreateBuffer failed: %d", fn, (int)err);
    }
    *out = b;
    return BINV_SUCCESS;
}

/* src/kv.h says what the shared checks check. */
binv_status binv_kv_check_cache(binv_context *ctx, const char *fn, const binv_kv_cache *c,
                                const binv_kv_batch *b, int pools, binv_view *vk, binv_view *vv,
                                binv_view *vmeta) {
    BINV_RETURN_ERROR_ON(!c || !b, ctx, BINV_ERROR_INVALID_ARGUMENT, "%s: cache or batch is NULL",
                         fn);
    BINV_RETURN_ERROR_ON(b->ctx != ctx, ctx, BINV_ERROR_CONTEXT_MISMATCH,
                         "%s: the batch was created on another binv_context", fn);
    BINV_RETURN_ERROR_ON(binv_dtype_size(c->dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "%s: cache dtype %d is not a binv_dtype", fn, (int)c->dtype);
    BINV_RETURN_ERROR_ON(c->head_dim == 0 || c->head_dim > ATTN_MAX_HEAD_DIM || c->kv_heads == 0 ||
                             c->kv_heads > 4096,
                         ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: head_dim=%zu (1..%d) kv_heads=%zu (1..4096)", fn, c->head_dim,
                         ATTN_MAX_HEAD_DIM, c->kv_heads);
    BINV_RETURN_ERROR_ON(c->num_pages < b->num_pages, ctx, BINV_ERROR_INVALID_VALUE,
                         "%s: the batch was validated for %zu pages but the cache has %zu", fn,
                         b->num_pages, c->num_pages);
    /* Every factor checked: num_pages * BINV_KV_PAGE_SIZE unchecked let a
     * huge num_pages wrap to a small extent that passed CL_MEM_SIZE. */
    size_t ext;
    BINV_RETURN_ERROR_ON(!binv_mul3_size(c->num_pages, BINV_KV_PAGE_SIZE, c->kv_heads, &ext) ||
                             !binv_mul_add_size(ext, c->head_dim, 0, &ext),
                         ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: cache extent overflows (num_pages=%zu kv_heads=%zu head_dim=%zu)", fn,
                         c->num_pages, c->kv_heads, c->head_dim);
    const size_t es = binv_dtype_size(c->dtype);
    binv_status st;
    if ((st = binv_check_buffer(ctx, c->k, 0, ext, es, "cache->k")) != BINV_SUCCESS) return st;
    if ((st = binv_check_buffer(ctx, c->v, 0, ext, es, "cache->v")) != BINV_SUCCESS) return st;
    /* A step without new tokens touches nothing (empty views). */
    const size_t used = b->num_tokens ? 1 : 0;
    if ((st = binv_view_of(ctx, c->k, 0, used, ext, ext, es, pools, "cache->k", vk)) !=
            BINV_SUCCESS ||
        (st = binv_view_of(ctx, c->v, 0, used, ext, ext, es, pools, "cache->v", vv)) !=
            BINV_SUCCESS ||
        (st = binv_view_of(ctx, b->meta, 0, used, b->meta_words, b->meta_words, sizeof(cl_uint),
                           BINV_ACCESS_READ, "the batch's metadata", vmeta)) != BINV_SUCCESS)
        return st;
    /* binv_kv_append writes both pools: storage they share would be written
     * twice; binv_attention expects K and V to be different data. */
    BINV_RETURN_ERROR_ON(binv_view_overlap(vk, vv), ctx, BINV_ERROR_ALIASING,
                         "%s: cache->k and cache->v overlap", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(vk, vmeta) || binv_view_overlap(vv, vmeta), ctx,
                         BINV_ERROR_ALIASING, "%s: a cache pool overlaps the batch's metadata", fn);
    return BINV_SUCCESS;
}

/* A token-row matrix argument: tokens x width elements, stride ld. */
binv_status binv_kv_check_rows(binv_context *ctx, const char *fn, const char *what, cl_mem m,
                               size_t off, size_t ld, size_t tokens, size_t width, size_t es,
                               size_t *ext) {
    BINV_RETURN_ERROR_ON(ld < width, ctx, BINV_ERROR_INVALID_LEADING_DIMENSION,
                         "%s: the row stride of %s (%zu) is smaller than its width %zu", fn, what,
                         ld, width);
    *ext = 0;
    BINV_RETURN_ERROR_ON(tokens && !binv_mul_add_size(tokens - 1, ld, width, ext), ctx,
                         BINV_ERROR_INVALID_DIMENSION, "%s: %s extent overflows", fn, what);
    return binv_check_buffer(ctx, m, off, *ext, es, what);
}


binv_status binv_kv_entry(binv_context *ctx, cl_command_queue queue, cl_uint n, const cl_event *w,
                          cl_event *ev) {
    binv_clear_error(ctx);
    if (ev) *ev = NULL;
    binv_status st = binv_check_queue(ctx, queue);
    if (st != BINV_SUCCESS) return st;
    return binv_check_wait_list(ctx, n, w);
}

/* The new rows' views and checks, shared by binv_kv_append and
 * binv_kv_append_rope(_q): the cache and batch, k_new and v_new against
 * their buffers, and no byte shared with a pool.  v[0..4] receive the views
 * of cache->k, cache->v, the batch's metadata, k_new, v_new. */
static binv_status check_append(binv_context *ctx, const char *fn, const binv_kv_cache *cache,
                                const binv_kv_batch *batch, cl_mem k_new, size_t k_offset,
                                size_t ldk, cl_mem v_new, size_t v_offset, size_t ldv,
                                binv_view v[5]) {
    binv_status st;
    if ((st = binv_kv_check_cache(ctx, fn, cache, batch, BINV_ACCESS_WRITE, &v[0], &v[1],
                                  &v[2])) != BINV_SUCCESS)
        return st;
    const size_t es = binv_dtype_size(cache->dtype), kvd = cache->kv_heads * cache->head_dim;
    const size_t T = batch->num_tokens;
    size_t ek, ev;
    if ((st = binv_kv_check_rows(ctx, fn, "k_new", k_new, k_offset, ldk, T, kvd, es, &ek)) !=
            BINV_SUCCESS ||
        (st = binv_kv_check_rows(ctx, fn, "v_new", v_new, v_offset, ldv, T, kvd, es, &ev)) !=
            BINV_SUCCESS)
        return st;
    if ((st = binv_view_of(ctx, k_new, k_offset, T, kvd, ldk, es, BINV_ACCESS_READ, "k_new",
                           &v[3])) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, v_new, v_offset, T, kvd, ldv, es, BINV_ACCESS_READ, "v_new",
                           &v[4])) != BINV_SUCCESS)
        return st;
    /* The new rows are read while the pools are written (any slot, as far as
     * the host knows without reading the page table): no shared byte. */
    BINV_RETURN_ERROR_ON(binv_view_overlap(&v[3], &v[0]) || binv_view_overlap(&v[3], &v[1]) ||
                             binv_view_overlap(&v[4], &v[0]) || binv_view_overlap(&v[4], &v[1]),
                         ctx, BINV_ERROR_ALIASING, "%s: k_new or v_new overlaps a cache pool", fn);
    return BINV_SUCCESS;
}

binv_status binv_kv_append(binv_context *ctx, cl_command_queue queue, const binv_kv_cache *cache,
                           const binv_kv_batch *batch, cl_mem k_new, size_t k_offset, size_t ldk,
                           cl_mem v_new, size_t v_offset, size_t ldv, cl_uint num_events,
                           const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const char *fn = "binv_kv_append";
    binv_status st = binv_kv_entry(ctx, queue, num_events, wait_list, event);
    if (st != BINV_SUCCESS) return st;
    binv_view views[5];
    if ((st = check_append(ctx, fn, cache, batch, k_new, k_offset, ldk, v_new, v_offset, ldv,
                           views)) != BINV_SUCCESS)
        return st;
    const size_t kvd = cache->kv_heads * cache->head_dim, T = batch->num_tokens;
    if (T == 0) return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    cl_program prog;
    if ((st = binv_program_get_dtype(ctx, "attention", binv_cl_attention, cache->dtype, &prog)) !=
        BINV_SUCCESS)
        return st;
    cl_uint ntok = (cl_uint)T, pt_off = batch->pt_off, mp = (cl_uint)batch->max_pages,
            ukvd = (cl_uint)kvd;
    cl_ulong ko = k_offset, lk = ldk, vo = v_offset, lv = ldv;
    const binv_arg args[] = {BINV_ARG(batch->meta), BINV_ARG(ntok),     BINV_ARG(pt_off),
                             BINV_ARG(mp),          BINV_ARG(ukvd),     BINV_ARG(k_new),
                             BINV_ARG(ko),          BINV_ARG(lk),       BINV_ARG(v_new),
                             BINV_ARG(vo),          BINV_ARG(lv),       BINV_ARG(cache->k),
                             BINV_ARG(cache->v)};
    const size_t lws[2] = {64, 1}, gws[2] = {(kvd + 63) / 64 * 64, T};
    return binv_kernel_launch(ctx, queue, prog, "attn_append", args, BINV_NARGS(args), 2, gws,
                              lws, num_events, wait_list, event);
}

/* The Q rows of binv_kv_append_rope_q (q NULL for binv_kv_append_rope). */
typedef struct rope_q {
    size_t heads;
    cl_mem q;
    size_t offset, ld;
} rope_q;

/* binv_kv_append's checks, then binv_rope's (on K with the cache's kv_heads
 * and head_dim, and on Q), then Q's row view: read and written in place, so
 * no byte shared with k_new, v_new, the pools or the batch's metadata (the
 * positions binv_rope would read).  One launch of attn_append_rope. */
static binv_status append_rope(binv_context *ctx, const char *fn, cl_command_queue queue,
                               const binv_kv_cache *cache, const binv_kv_batch *batch,
                               const rope_q *rq, cl_mem k_new, size_t k_offset, size_t ldk,
                               cl_mem v_new, size_t v_offset, size_t ldv, float theta,
                               cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    binv_status st = binv_kv_entry(ctx, queue, num_events, wait_list, event);
    if (st != BINV_SUCCESS) return st;
    binv_view v[5], vq;
    if ((st = check_append(ctx, fn, cache, batch, k_new, k_offset, ldk, v_new, v_offset, ldv,
                           v)) != BINV_SUCCESS)
        return st;
    const size_t T = batch->num_tokens, hd = cache->head_dim, kvd = cache->kv_heads * hd;
    const size_t es = binv_dtype_size(cache->dtype);
    if ((st = binv_rope_check(ctx, fn, T, cache->kv_heads, hd, theta)) != BINV_SUCCESS) return st;
    size_t nq = 0;
    if (rq) {
        size_t ext;
        if ((st = binv_rope_check(ctx, fn, T, rq->heads, hd, theta)) != BINV_SUCCESS ||
            (st = binv_kv_check_rows(ctx, fn, "q", rq->q, rq->offset, rq->ld, T, rq->heads * hd,
                                     es, &ext)) != BINV_SUCCESS ||
            (st = binv_view_of(ctx, rq->q, rq->offset, T, rq->heads * hd, rq->ld, es,
                               BINV_ACCESS_READ | BINV_ACCESS_WRITE, "q", &vq)) != BINV_SUCCESS)
            return st;
        for (int i = 0; i < 5; i++)
            BINV_RETURN_ERROR_ON(binv_view_overlap(&vq, &v[i]), ctx, BINV_ERROR_ALIASING,
                                 "%s: q overlaps k_new, v_new, a cache pool or the batch's "
                                 "metadata", fn);
        nq = rq->heads * hd / 2;
    }
    if (T == 0) return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    cl_program prog;
    if ((st = binv_program_get_dtype(ctx, "attention", binv_cl_attention, cache->dtype, &prog)) !=
        BINV_SUCCESS)
        return st;
    cl_mem freq;
    if ((st = binv_rope_freq(ctx, theta, hd, &freq)) != BINV_SUCCESS) return st;
    cl_uint ntok = (cl_uint)T, pt_off = batch->pt_off, mp = (cl_uint)batch->max_pages,
            ukvd = (cl_uint)kvd, uhd = (cl_uint)hd, unq = (cl_uint)nq;
    cl_ulong ko = k_offset, lk = ldk, vo = v_offset, lv = ldv;
    cl_ulong qo = rq ? rq->offset : 0, lq = rq ? rq->ld : 0;
    /* Without Q the kernel's q argument is never read: k_new stands in. */
    cl_mem q = rq ? rq->q : k_new;
    const binv_arg args[] = {BINV_ARG(batch->meta), BINV_ARG(ntok), BINV_ARG(pt_off),
                             BINV_ARG(mp),          BINV_ARG(ukvd), BINV_ARG(uhd),
                             BINV_ARG(k_new),       BINV_ARG(ko),   BINV_ARG(lk),
                             BINV_ARG(v_new),       BINV_ARG(vo),   BINV_ARG(lv),
                             BINV_ARG(cache->k),    BINV_ARG(cache->v), BINV_ARG(freq),
                             BINV_ARG(unq),         BINV_ARG(q),    BINV_ARG(qo),
                             BINV_ARG(lq)};
    const size_t items = kvd / 2 + nq;
    const size_t lws[2] = {64, 1}, gws[2] = {(items + 63) / 64 * 64, T};
    st = binv_kernel_launch(ctx, queue, prog, "attn_append_rope", args, BINV_NARGS(args), 2, gws,
                            lws, num_events, wait_list, event);
    clReleaseMemObject(freq); /* binv_rope_freq's reference (see there) */
    return st;
}

binv_status binv_kv_append_rope(binv_context *ctx, cl_command_queue queue,
                                const binv_kv_cache *cache, const binv_kv_batch *batch,
                                cl_mem k_new, size_t k_offset, size_t ldk, cl_mem v_new,
                                size_t v_offset, size_t ldv, float theta, cl_uint num_events,
                                const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    return append_rope(ctx, "binv_kv_append_rope", queue, cache, batch, NULL, k_new, k_offset,
                       ldk, v_new, v_offset, ldv, theta, num_events, wait_list, event);
}

binv_status binv_kv_append_rope_q(binv_context *ctx, cl_command_queue queue,
                                  const binv_kv_cache *cache, const binv_kv_batch *batch,
                                  size_t heads, cl_mem q, size_t q_offset, size_t ldq,
                                  cl_mem k_new, size_t k_offset, size_t ldk, cl_mem v_new,
                                  size_t v_offset, size_t ldv, float theta, cl_uint num_events,
                                  const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const rope_q rq = {heads, q, q_offset, ldq};
    return append_rope(ctx, "binv_kv_append_rope_q", queue, cache, batch, &rq, k_new, k_offset,
                       ldk, v_new, v_offset, ldv, theta, num_events, wait_list, event);
}
