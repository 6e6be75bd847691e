/* Attention over a paged KV cache (binv_attention) and RoPE (binv_rope); the
 * cache's batches and binv_kv_append: src/kv.c.  Kernels and their reduction
 * order: cl/attention.cl; schedule: docs/schedules.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "internal.h"
#include "kv.h"

/* The invariant key-chunk length: a library constant (the same for every
 * head_dim and dtype), part of the bits' contract. */
#define ATTN_CH 256
#define ATTN_FUSED_SPLIT 0xffffffffu /* split_chunks of "one split holds every chunk" */
/* RoPE frequency tables a context keeps (a model uses one or two thetas). */
#define BINV_ROPE_TABLES 8

size_t binv_attention_split_size(binv_dtype dtype, size_t head_dim) {
    (void)head_dim;
    return binv_dtype_size(dtype) ? ATTN_CH : 0;
}

/* theta^(-2i/head_dim) for i < head_dim/2: computed in double and rounded
 * to float once, so the float is the correctly rounded value except when the
 * host's pow() is off by an ulp of double exactly at a float rounding
 * boundary (probability ~2^-29 per entry).  A float-only evaluation on the
 * device would err by up to 2^-20 relative (the rounding of the exponent
 * times ln theta), 0.9 rad at position 10^6.
 *
 * Cached in the context, the BINV_ROPE_TABLES most recently used (theta,
 * head_dim) pairs, most recent first: a long-lived context that sees many
 * thetas must not keep a buffer for each.  *out is retained for the caller,
 * who releases it after its last enqueue: another thread may evict (release)
 * the cache's reference meanwhile, and an enqueued kernel keeps using the
 * buffer after every handle is released (clReleaseMemObject: the object is
 * deleted once its count is zero AND the commands using it have finished). */
binv_status binv_rope_freq(binv_context *ctx, float theta, size_t head_dim, cl_mem *out) {
    pthread_mutex_lock(&ctx->lock);
    for (binv_rope_table **pt = &ctx->rope_tables; *pt; pt = &(*pt)->next) {
        binv_rope_table *t = *pt;
        if (t->theta == theta && t->head_dim == head_dim) {
            *pt = t->next; /* to the front */
            t->next = ctx->rope_tables;
            ctx->rope_tables = t;
            cl_int err = clRetainMemObject(t->freq);
            pthread_mutex_unlock(&ctx->lock);
            BINV_CHECK_CL(ctx, err, "binv_rope: clRetainMemObject(frequency table)");
            *out = t->freq;
            return BINV_SUCCESS;
        }
    }
    binv_rope_table *t = calloc(1, sizeof *t);
    float *f = malloc(head_dim / 2 * sizeof *f);
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    if (t && f) {
        for (size_t i = 0; i < head_dim / 2; i++)
            f[i] = (float)pow((double)theta, -(double)(2 * i) / (double)head_dim);
        t->freq = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 head_dim / 2 * sizeof *f, f, &err);
    }
    free(f);
    if (err != CL_SUCCESS) {
        free(t);
        pthread_mutex_unlock(&ctx->lock);
        return binv_set_error(ctx, err == CL_OUT_OF_HOST_MEMORY ? BINV_ERROR_OUT_OF_HOST_MEMORY : err,
                              "binv_rope: frequency table: error %d", (int)err);
    }
    err = clRetainMemObject(t->freq); /* the caller's reference */
    if (err != CL_SUCCESS) {
        clReleaseMemObject(t->freq);
        free(t);
        pthread_mutex_unlock(&ctx->lock);
        return binv_set_error(ctx, err, "binv_rope: clRetainMemObject(frequency table): %d",
                              (int)err);
    }
    t->theta = theta;
    t->head_dim = head_dim;
    t->next = ctx->rope_tables;
    ctx->rope_tables = t;
    /* Evict past BINV_ROPE_TABLES: the least recently used at the tail. */
    size_t n = 0;
    for (binv_rope_table **pt = &ctx->rope_tables; *pt;) {
        if (++n > BINV_ROPE_TABLES) {
            binv_rope_table *old = *pt;
            *pt = old->next;
            clReleaseMemObject(old->freq);
            free(old);
        } else {
            pt = &(*pt)->next;
        }
    }
    *out = t->freq;
    pthread_mutex_unlock(&ctx->lock);
    return BINV_SUCCESS;
}

void binv_attention_destroy_all(binv_context *ctx) {
    while (ctx->rope_tables) {
        binv_rope_table *t = ctx->rope_tables;
        ctx->rope_tables = t->next;
        clReleaseMemObject(t->freq);
        free(t);
    }
}

/* src/kv.h says what it checks. */
binv_status binv_rope_check(binv_context *ctx, const char *fn, size_t tokens, size_t heads,
                            size_t head_dim, float theta) {
    BINV_RETURN_ERROR_ON(head_dim < 2 || head_dim % 2 || heads == 0 || heads > 0xffff ||
                             head_dim > 0xffff || tokens > 0x7fffffff,
                         ctx, BINV_ERROR_INVALID_DIMENSION,
                         "%s: head_dim=%zu must be even and >= 2, heads=%zu >= 1, tokens=%zu < 2^31",
                         fn, head_dim, heads, tokens);
    BINV_RETURN_ERROR_ON(!(theta > 1.0f) || isinf(theta), ctx, BINV_ERROR_INVALID_VALUE,
                         "%s: theta must be finite and > 1 (got %g)", fn, (double)theta);
    return BINV_SUCCESS;
}

binv_status binv_rope(binv_context *ctx, cl_command_queue queue, binv_dtype dtype, size_t tokens,
                      size_t heads, size_t head_dim, cl_mem x, size_t x_offset, size_t ldx,
                      cl_mem positions, size_t positions_offset, float theta,
                      cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    return binv_rope_run(ctx, "binv_rope", 0, queue, dtype, tokens, heads, head_dim, x, x_offset,
                         ldx, positions, positions_offset, theta, num_events, wait_list, event);
}

/* src/activation.h says what it does. */
binv_status binv_rope_run(binv_context *ctx, const char *fn, int inverse, cl_command_queue queue,
                          binv_dtype dtype, size_t tokens, size_t heads, size_t head_dim, cl_mem x,
                          size_t x_offset, size_t ldx, cl_mem positions, size_t positions_offset,
                          float theta, cl_uint num_events, const cl_event *wait_list,
                          cl_event *event) {
    binv_status st = binv_kv_entry(ctx, queue, num_events, wait_list, event);
    if (st != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(binv_dtype_size(dtype) == 0, ctx, BINV_ERROR_UNSUPPORTED_DTYPE,
                         "%s: dtype %d is not a binv_dtype", fn, (int)dtype);
    if ((st = binv_rope_check(ctx, fn, tokens, heads, head_dim, theta)) != BINV_SUCCESS) return st;
    size_t ext;
    if ((st = binv_kv_check_rows(ctx, fn, "x", x, x_offset, ldx, tokens, heads * head_dim,
                                 binv_dtype_size(dtype), &ext)) != BINV_SUCCESS)
        return st;
    if ((st = binv_check_buffer(ctx, positions, positions_offset, tokens, sizeof(cl_uint),
                                "positions")) != BINV_SUCCESS)
        return st;
    /* x is read and written in place; positions (possibly a batch's
     * metadata) is read: no shared byte, through sub-buffers too. */
    binv_view vx, vp;
    if ((st = binv_view_of(ctx, x, x_offset, tokens, heads * head_dim, ldx, binv_dtype_size(dtype),
                           BINV_ACCESS_READ | BINV_ACCESS_WRITE, "x", &vx)) != BINV_SUCCESS ||
        (st = binv_view_of(ctx, positions, positions_offset, 1, tokens, tokens, sizeof(cl_uint),
                           BINV_ACCESS_READ, "positions", &vp)) != BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vx, &vp), ctx, BINV_ERROR_ALIASING,
                         "%s: positions overlaps x", fn);
    if (tokens == 0) return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);
    cl_program prog;
    if ((st = inverse ? binv_act_backward_program(ctx, dtype, &prog)
                      : binv_program_get_dtype(ctx, "attention", binv_cl_attention, dtype,
                                               &prog)) != BINV_SUCCESS)
        return st;
    cl_mem freq;
    if ((st = binv_rope_freq(ctx, theta, head_dim, &freq)) != BINV_SUCCESS) return st;
    cl_ulong xo = x_offset, lx = ldx, po = positions_offset;
    cl_uint h = (cl_uint)heads, hd = (cl_uint)head_dim;
    const binv_arg args[] = {BINV_ARG(x),  BINV_ARG(xo), BINV_ARG(lx), BINV_ARG(positions),
                             BINV_ARG(po), BINV_ARG(h),  BINV_ARG(hd), BINV_ARG(freq)};
    const size_t pairs = heads * head_dim / 2;
    const size_t lws[2] = {64, 1}, gws[2] = {(pairs + 63) / 64 * 64, tokens};
    st = binv_kernel_launch(ctx, queue, prog, inverse ? "act_rope_backward" : "attn_rope", args,
                            BINV_NARGS(args), 2, gws, lws, num_events, wait_list, event);
    clReleaseMemObject(freq); /* binv_rope_freq's reference (see there) */
    return st;
}

/* Tile shape of attn_chunks for this device (who computes what only). */
typedef struct attn_shape {
    int gb, tb, j, wg;
} attn_shape;

static size_t local_bytes(const attn_shape *s, size_t d) {
    const size_t r = (size_t)s->tb * s->gb;
    return 4 * (r * d + (size_t)s->j * (d + 4) + r * ATTN_CH + 3 * r + ATTN_CH + (size_t)s->wg) + 32;
}

static attn_shape pick_shape(const binv_context *ctx, size_t group, size_t d, cl_uint max_q) {
    const int gpu = (ctx->info.type & CL_DEVICE_TYPE_GPU) != 0;
    const int rmax = gpu ? 16 : 8;
    attn_shape s = {1, 1, gpu ? 64 : 16, gpu ? 128 : 64};
    for (int g = 1; g <= rmax && (size_t)g <= group; g++)
        if (group % (size_t)g == 0) s.gb = g;
    /* Tokens per group: 1 for decode steps, else enough to make rmax rows.
     * Decode on a GPU: 16-key tiles (less local memory, so more groups per
     * compute unit; prefill prefers larger tiles).  docs/tuning.md has the
     * measurements. */
    s.tb = max_q > 1 ? rmax / s.gb : 1;
    if (gpu && max_q == 1) s.j = 16;
    if (s.tb < 1) s.tb = 1;
    if ((size_t)s.wg > ctx->info.max_work_group_size) s.wg = (int)ctx->info.max_work_group_size;
    /* Tuning override (bits never depend on it): BINV_ATTN_SHAPE=gb,tb,j,wg. */
    attn_shape e = {ctx->tuning.attn_shape.gb, ctx->tuning.attn_shape.tb,
                    ctx->tuning.attn_shape.j, ctx->tuning.attn_shape.wg};
    if (ctx->tuning.attn_shape.set && group % (size_t)e.gb == 0 &&
        (size_t)e.wg <= ctx->info.max_work_group_size &&
        local_bytes(&e, d) <= ctx->info.local_mem_size) {
        if (max_q == 1) e.tb = 1;
        return e;
    }
    const size_t budget = (size_t)ctx->info.local_mem_size - 1024;
    while (local_bytes(&s, d) > budget && s.j > 32) s.j /= 2;
    while (local_bytes(&s, d) > budget && s.tb > 1) s.tb /= 2;
    while (local_bytes(&s, d) > budget && s.j > 4) s.j /= 2;
    while (local_bytes(&s, d) > budget && s.gb > 1) {
        int g = s.gb - 1;
        while (group % (size_t)g) g--;
        s.gb = g;
    }
    return s;
}

/* Builds (or finds) the work list of (seq, first token, tokens, split) and
 * each token's first split-state record. */
static binv_status get_config(binv_context *ctx, binv_kv_batch *b, cl_uint tb,
                              cl_uint split_chunks, const attn_config **out) {
    for (int i = 0; i < b->nconfigs; i++)
        if (b->configs[i].tb == tb && b->configs[i].split_chunks == split_chunks) {
            *out = &b->configs[i];
            return BINV_SUCCESS;
        }
    size_t nwork = 0;
    for (size_t s = 0; s < b->num_seqs; s++)
        for (cl_uint t = 0; t < b->q_lens[s]; t += tb) {
            const cl_uint last = t + tb < b->q_lens[s] ? t + tb - 1 : b->q_lens[s] - 1;
            const cl_uint maxpos = b->ctx_lens[s] - b->q_lens[s] + last;
            nwork += (maxpos / ATTN_CH) / split_chunks + 1;
        }
    cl_uint *work = malloc((nwork ? nwork : 1) * 4 * sizeof(cl_uint));
    cl_uint *base = malloc((b->num_tokens ? b->num_tokens : 1) * sizeof(cl_uint));
    if (!work || !base) {
        free(work);
        free(base);
        return binv_set_error(ctx, BINV_ERROR_OUT_OF_HOST_MEMORY,
                              "binv_attention: out of host memory");
    }
    size_t w = 0, tok = 0, records = 0;
    for (size_t s = 0; s < b->num_seqs; s++) {
        const cl_uint pos0 = b->ctx_lens[s] - b->q_lens[s];
        for (cl_uint t = 0; t < b->q_lens[s]; t += tb) {
            const cl_uint nt = t + tb < b->q_lens[s] ? tb : b->q_lens[s] - t;
            const cl_uint ns = ((pos0 + t + nt - 1) / ATTN_CH) / split_chunks + 1;
            for (cl_uint sp = 0; sp < ns; sp++, w++) {
                work[4 * w] = (cl_uint)s;
                work[4 * w + 1] = (cl_uint)(tok + t);
                work[4 * w + 2] = nt;
                work[4 * w + 3] = sp;
            }
        }
        for (cl_uint t = 0; t < b->q_lens[s]; t++) {
            const cl_uint ns = ((pos0 + t) / ATTN_CH) / split_chunks + 1;
            base[tok + t] = (cl_uint)records;
            if (ns > 1) records += ns;
        }
        tok += b->q_lens[s];
    }
    cl_int e1 = CL_SUCCESS, e2 = CL_SUCCESS;
    attn_config c = {.tb = tb, .split_chunks = split_chunks, .nwork = nwork, .records = records};
    c.work = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                            (nwork ? nwork : 1) * 4 * sizeof(cl_uint), work, &e1);
    c.part_base = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 (b->num_tokens ? b->num_tokens : 1) * sizeof(cl_uint), base, &e2);
    free(work);
    free(base);
    if (e1 != CL_SUCCESS || e2 != CL_SUCCESS) {
        if (c.work) clReleaseMemObject(c.work);
        if (c.part_base) clReleaseMemObject(c.part_base);
        return binv_set_error(ctx, e1 != CL_SUCCESS ? e1 : e2,
                              "binv_attention: clCreateBuffer failed: %d", (int)(e1 ? e1 : e2));
    }
    if (b->nconfigs == ATTN_CONFIGS) { /* evict the oldest */
        clReleaseMemObject(b->configs[0].work);
        clReleaseMemObject(b->configs[0].part_base);
        memmove(b->configs, b->configs + 1, (ATTN_CONFIGS - 1) * sizeof *b->configs);
        b->nconfigs--;
    }
    b->configs[b->nconfigs] = c;
    *out = &b->configs[b->nconfigs++];
    return BINV_SUCCESS;
}

/* binv_attention's arguments past the queue and wait list (binv_kv_entry). */
static binv_status check_call(binv_context *ctx, const binv_kv_cache *cache,
                              const binv_kv_batch *batch_c, size_t heads, float scale, cl_mem q,
                              size_t q_offset, size_t ldq, cl_mem o, size_t o_offset, size_t ldo) {
    const char *fn = "binv_attention";
    binv_status st;
    binv_view vk, vv, vmeta, vq, vo;
    if ((st = binv_kv_check_cache(ctx, fn, cache, batch_c, BINV_ACCESS_READ, &vk, &vv,
                                  &vmeta)) != BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON(heads == 0 || heads % cache->kv_heads || heads > 0xffff, ctx,
                         BINV_ERROR_INVALID_DIMENSION,
                         "%s: heads=%zu must be a positive multiple of kv_heads=%zu", fn, heads,
                         cache->kv_heads);
    BINV_RETURN_ERROR_ON(!isfinite(scale), ctx, BINV_ERROR_INVALID_VALUE,
                         "%s: scale must be finite (got %g)", fn, (double)scale);
    const size_t es = binv_dtype_size(cache->dtype), D = cache->head_dim, T = batch_c->num_tokens;
    size_t eq, eo;
    if ((st = binv_kv_check_rows(ctx, fn, "q", q, q_offset, ldq, T, heads * D, es, &eq)) !=
            BINV_SUCCESS ||
        (st = binv_kv_check_rows(ctx, fn, "o", o, o_offset, ldo, T, heads * D, es, &eo)) !=
            BINV_SUCCESS)
        return st;
    /* o is written while q, the pools and the batch's metadata (page
     * table, positions) are read: no shared byte, through sub-buffers too.
     * (The split states live in a workspace of the library's own.) */
    if ((st = binv_view_of(ctx, q, q_offset, T, heads * D, ldq, es, BINV_ACCESS_READ, "q", &vq)) !=
            BINV_SUCCESS ||
        (st = binv_view_of(ctx, o, o_offset, T, heads * D, ldo, es, BINV_ACCESS_WRITE, "o", &vo)) !=
            BINV_SUCCESS)
        return st;
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vo, &vq), ctx, BINV_ERROR_ALIASING, "%s: o overlaps q",
                         fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vo, &vk) || binv_view_overlap(&vo, &vv), ctx,
                         BINV_ERROR_ALIASING, "%s: o overlaps a cache pool", fn);
    BINV_RETURN_ERROR_ON(binv_view_overlap(&vo, &vmeta), ctx, BINV_ERROR_ALIASING,
                         "%s: o overlaps the batch's metadata", fn);
    return BINV_SUCCESS;
}

/* Chunks per split of this call: every chunk in one split (ATTN_FUSED_SPLIT)
 * or split states merged by attn_merge.  In the invariant schedule both give
 * the same bits (BINV_ATTN_PATH forces either; the tests compare them). */
static cl_uint split_for(const binv_context *ctx, const binv_kv_batch *batch, size_t heads,
                         const attn_shape *sh) {
    /* Work-groups without splitting, and the chunks of the longest context. */
    size_t blocks = 0;
    for (size_t s = 0; s < batch->num_seqs; s++)
        blocks += (batch->q_lens[s] + (size_t)sh->tb - 1) / (size_t)sh->tb;
    const size_t groups = blocks * (heads / (size_t)sh->gb);
    const size_t max_chunks = batch->max_pos / ATTN_CH + 1;
    const size_t want = 4 * (size_t)ctx->info.compute_units;
    cl_uint split_chunks;
    if (ctx->schedule == BINV_SCHEDULE_ADAPTIVE) {
        /* FlashDecoding-style: as many splits as it takes to fill the device,
         * chosen from the batch (so the merge tree changes with it). */
        const size_t nsplit = groups >= want ? 1 : (want + groups - 1) / groups;
        const size_t per = (max_chunks + nsplit - 1) / nsplit;
        split_chunks = nsplit == 1 || per >= max_chunks ? ATTN_FUSED_SPLIT : (cl_uint)per;
    } else {
        int split = groups < want && max_chunks > 1;
        if (ctx->tuning.attn_path == 1) split = 0;
        if (ctx->tuning.attn_path == 2) split = 1;
        split_chunks = split ? 1 : ATTN_FUSED_SPLIT;
    }
    return split_chunks;
}

/* About 100 lines on purpose: the call's steps in order (checks, shape, split,
 * program, work list, workspace, the two launches), each a few lines; cut
 * further, the pieces would pass a dozen locals between them. */
binv_status binv_attention(binv_context *ctx, cl_command_queue queue, const binv_kv_cache *cache,
                           const binv_kv_batch *batch_c, size_t heads, float scale, cl_mem q,
                           size_t q_offset, size_t ldq, cl_mem o, size_t o_offset, size_t ldo,
                           cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return BINV_ERROR_INVALID_ARGUMENT;
    const char *fn = "binv_attention";
    binv_status st = binv_kv_entry(ctx, queue, num_events, wait_list, event);
    if (st != BINV_SUCCESS) return st;
    st = check_call(ctx, cache, batch_c, heads, scale, q, q_offset, ldq, o, o_offset, ldo);
    if (st != BINV_SUCCESS) return st;
    binv_kv_batch *batch = (binv_kv_batch *)batch_c; /* only its config cache changes */
    const size_t es = binv_dtype_size(cache->dtype), D = cache->head_dim, T = batch->num_tokens;
    if (T == 0) return binv_enqueue_marker(ctx, queue, num_events, wait_list, event);

    cl_uint max_q = 0;
    for (size_t s = 0; s < batch->num_seqs; s++)
        if (batch->q_lens[s] > max_q) max_q = batch->q_lens[s];
    const size_t group = heads / cache->kv_heads;
    attn_shape sh = pick_shape(ctx, group, D, max_q);
    BINV_RETURN_ERROR_ON(local_bytes(&sh, D) > ctx->info.local_mem_size, ctx,
                         BINV_ERROR_UNSUPPORTED_DEVICE,
                         "%s: head_dim %zu needs %zu bytes of local memory; the device has %lu",
                         fn, D, local_bytes(&sh, D), (unsigned long)ctx->info.local_mem_size);
    cl_uint split_chunks = split_for(ctx, batch, heads, &sh);
    char defines[128];
    /* 16-byte loads need head_dim a multiple of 16 bytes of elements. */
    const int vec = D % (es == 4 ? 4 : 8) == 0;
    /* Register-blocked sums: quads of columns, WG a multiple of D/4. */
    const int blk = D % 4 == 0 && (size_t)sh.wg % (D / 4) == 0 && sh.wg % sh.j == 0;
    snprintf(defines, sizeof defines,
             "-DBINV_DTYPE=%d -DCH=%d -DD=%zu -DGB=%d -DTB=%d -DJ=%d -DWG=%d -DVEC=%d -DBLK=%d",
             (int)cache->dtype, ATTN_CH, D, sh.gb, sh.tb, sh.j, sh.wg, vec, blk);
    cl_program prog;
    if ((st = binv_program_get(ctx, "attention", binv_cl_attention, defines, &prog)) !=
        BINV_SUCCESS)
        return st;
    pthread_mutex_lock(&batch->lock);
    const attn_config *cfg = NULL;
    st = get_config(ctx, batch, (cl_uint)sh.tb, split_chunks, &cfg);
    if (st != BINV_SUCCESS) {
        pthread_mutex_unlock(&batch->lock);
        return st;
    }
    binv_debug(ctx, "%s T=%zu heads=%zu D=%zu gb=%d tb=%d j=%d wg=%d split_chunks=%u work=%zu "
               "records=%zu", fn, T, heads, D, sh.gb, sh.tb, sh.j, sh.wg, split_chunks,
               cfg->nwork, cfg->records);
    size_t ws_bytes = 4;
    size_t recs;
    if (cfg->records && (!binv_mul_add_size(cfg->records, heads, 0, &recs) ||
                         !binv_mul3_size(recs, D + 2, 4, &ws_bytes)))
        st = binv_set_error(ctx, BINV_ERROR_INVALID_DIMENSION, "%s: workspace overflows", fn);
    /* The grids: work items x group size, tokens x attn_merge's <= 128. */
    size_t grid = 0, mgrid = 0;
    if (st == BINV_SUCCESS && (!binv_mul_add_size(cfg->nwork, (size_t)sh.wg, 0, &grid) ||
                               !binv_mul_add_size(T, 128, 0, &mgrid)))
        st = binv_set_error(ctx, BINV_ERROR_INVALID_DIMENSION, "%s: the launch grid overflows",
                            fn);
    binv_workspace *wsh = NULL;
    cl_mem ws = NULL;
    if (st != BINV_SUCCESS ||
        (st = binv_workspace_acquire(ctx, queue, ws_bytes, &wsh, &ws)) != BINV_SUCCESS) {
        pthread_mutex_unlock(&batch->lock);
        return st;
    }
    cl_uint ntok = (cl_uint)T, pt_off = batch->pt_off, mp = (cl_uint)batch->max_pages,
            uh = (cl_uint)heads, ukv = (cl_uint)cache->kv_heads;
    cl_ulong qo = q_offset, lq = ldq, oo = o_offset, lo = ldo;
    const binv_arg args[] = {
        BINV_ARG(batch->meta), BINV_ARG(ntok),   BINV_ARG(pt_off),   BINV_ARG(mp),
        BINV_ARG(cfg->work),   BINV_ARG(cfg->part_base),             BINV_ARG(q),
        BINV_ARG(qo),          BINV_ARG(lq),     BINV_ARG(o),        BINV_ARG(oo),
        BINV_ARG(lo),          BINV_ARG(cache->k),                   BINV_ARG(cache->v),
        BINV_ARG(uh),          BINV_ARG(ukv),    BINV_ARG(scale),    BINV_ARG(split_chunks),
        BINV_ARG(ws)};
    const size_t lws[2] = {(size_t)sh.wg, 1};
    const size_t gws[2] = {grid, heads / (size_t)sh.gb};
    const int merge = cfg->records > 0;
    /* All or nothing for o: with split states, attn_chunks writes the rows
     * of tokens that have one split and attn_merge the others, so both
     * kernels are prepared (arguments set, work-group sizes checked) before
     * the first is enqueued (binv_kernel_launch_seq).  What can still fail
     * after attn_chunks is enqueued is attn_merge's clEnqueueNDRangeKernel
     * itself (the driver out of resources or host memory): the call then
     * returns that status with the rows of tokens whose keys fit one split
     * (invariant schedule: positions below binv_attention_split_size())
     * holding their final values and every other row of o untouched. */
    const binv_arg margs[] = {BINV_ARG(batch->meta), BINV_ARG(cfg->part_base), BINV_ARG(ws),
                              BINV_ARG(o),           BINV_ARG(oo),             BINV_ARG(lo),
                              BINV_ARG(uh),          BINV_ARG(split_chunks)};
    /* 32..128 items, each a few of the D + 1 columns (attn_merge sizes
     * its register array for >= 32 items). */
    size_t mw = (D + 1 + 31) / 32 * 32;
    if (mw > 128) mw = 128;
    if (mw > ctx->info.max_work_group_size) mw = ctx->info.max_work_group_size;
    const size_t mlws[2] = {mw, 1}, mgws[2] = {T * mw, heads};
    const binv_launch seq[2] = {
        {.name = "attn_chunks", .args = args, .nargs = BINV_NARGS(args), .dims = 2, .gws = gws,
         .lws = lws},
        {.name = "attn_merge", .args = margs, .nargs = BINV_NARGS(margs), .dims = 2, .gws = mgws,
         .lws = mlws}};
    st = binv_kernel_launch_seq(ctx, queue, prog, merge ? 2 : 1, seq, num_events, wait_list,
                                event);
    binv_workspace_release(ctx, wsh, ws);
    pthread_mutex_unlock(&batch->lock);
    return st;
}
