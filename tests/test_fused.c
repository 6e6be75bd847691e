/* Fused ops against the unfused calls they replace (issue 17: fewer launches
 * per layer).  binv_kv_append_rope(_q) must write the bits of binv_rope on Q
 * and K_new followed by binv_kv_append, for every dtype and batch shape, leave
 * k_new unrotated, and attention over the fused-written cache must give the
 * same bits; bad input fails with its status and writes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};
#define THETA 10000.0f

/* One step: sequences with their q_len and ctx_len, heads, kv_heads, head_dim. */
typedef struct shape {
    const char *name;
    size_t nseq;
    cl_uint q_lens[4], ctx_lens[4];
    size_t heads, kvh, hd;
} shape;

static const shape SHAPES[] = {
    {"decode", 4, {1, 1, 1, 1}, {1, 17, 40, 33}, 4, 2, 64},
    {"prefill", 2, {37, 20}, {37, 20}, 4, 1, 128},
    {"chunked prefill + decode", 3, {16, 1, 5}, {48, 9, 21}, 6, 3, 32},
    {"head_dim 2", 2, {3, 1}, {3, 30}, 2, 2, 2},
};

/* The buffers of one run: qkv rows (q | k | v | padding), the two pools. */
typedef struct run {
    cl_mem qkv, k, v;
} run;

typedef struct step {
    binv_dtype dt;
    size_t es, T, ld, qw, kvd, pool_elems, pages, max_pages;
    binv_kv_batch *batch;
    unsigned char *qkv0, *pool0;
} step;

/* Pages handed out in a shuffled order, so that no sequence's pages are
 * contiguous or ascending. */
static void step_init(test_env *env, step *s, const shape *sh, binv_dtype dt, uint64_t seed) {
    s->dt = dt;
    s->es = binv_dtype_size(dt);
    s->T = 0;
    s->max_pages = 4;
    for (size_t i = 0; i < sh->nseq; i++) s->T += sh->q_lens[i];
    s->pages = sh->nseq * s->max_pages + 3;
    cl_uint *perm = malloc(s->pages * sizeof *perm), *pt = malloc(sh->nseq * s->max_pages * 4);
    for (size_t i = 0; i < s->pages; i++) perm[i] = (cl_uint)i;
    for (size_t i = s->pages - 1; i > 0; i--) {
        const size_t j = hx_rng_next(&seed) % (i + 1);
        const cl_uint t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(pt, perm, sh->nseq * s->max_pages * 4);
    assert_int_equal(binv_kv_batch_create(env->ctx, env->queue, s->pages, sh->nseq, sh->q_lens,
                                          sh->ctx_lens, pt, s->max_pages, &s->batch),
                     BINV_SUCCESS);
    free(perm);
    free(pt);
    s->qw = sh->heads * sh->hd;
    s->kvd = sh->kvh * sh->hd;
    s->ld = s->qw + 2 * s->kvd + 3;
    s->pool_elems = s->pages * BINV_KV_PAGE_SIZE * s->kvd;
    s->qkv0 = malloc(s->T * s->ld * s->es);
    s->pool0 = malloc(s->pool_elems * s->es);
    hx_fill_unit(dt, s->qkv0, s->T * s->ld, &seed);
    hx_fill_unit(dt, s->pool0, s->pool_elems, &seed);
}

static void step_free(step *s) {
    binv_kv_batch_destroy(s->batch);
    free(s->qkv0);
    free(s->pool0);
}

static run run_new(test_env *env, const step *s) {
    run r = {test_buffer(env, s->T * s->ld * s->es, s->qkv0),
             test_buffer(env, s->pool_elems * s->es, s->pool0),
             test_buffer(env, s->pool_elems * s->es, s->pool0)};
    return r;
}

static void run_free(run *r) {
    clReleaseMemObject(r->qkv);
    clReleaseMemObject(r->k);
    clReleaseMemObject(r->v);
}

static void expect_same(test_env *env, cl_mem a, cl_mem b, size_t bytes, const char *what,
                        const char *shape, binv_dtype dt) {
    unsigned char *ha = malloc(bytes), *hb = malloc(bytes);
    test_read(env, a, bytes, ha);
    test_read(env, b, bytes, hb);
    if (memcmp(ha, hb, bytes))
        fail_msg("%s differs (%s, %s)", what, shape, hx_dtype_name(dt));
    free(ha);
    free(hb);
}

/* o of binv_attention over a run's cache, read back into a new host array. */
static unsigned char *attend(test_env *env, const step *s, const shape *sh, const run *r,
                             const binv_kv_cache *c) {
    const size_t bytes = s->T * s->qw * s->es;
    cl_mem o = test_buffer(env, bytes, NULL);
    binv_kv_cache cache = *c;
    cache.k = r->k;
    cache.v = r->v;
    assert_int_equal(binv_attention(env->ctx, env->queue, &cache, s->batch, sh->heads,
                                    (float)(1.0 / sqrt((double)sh->hd)), r->qkv, 0, s->ld, o, 0,
                                    s->qw, 0, NULL, NULL),
                     BINV_SUCCESS);
    unsigned char *h = malloc(bytes);
    test_read(env, o, bytes, h);
    clReleaseMemObject(o);
    return h;
}

/* Unfused (a): rope(q), rope(k), append.  Fused with Q (b) and without (c):
 * the pools equal a's bit for bit; b's q columns equal a's; the k columns of
 * b and c are the input's (k_new only read); attention over a and b equal. */
static void check_shape(test_env *env, const shape *sh, binv_dtype dt, uint64_t seed) {
    step s;
    step_init(env, &s, sh, dt, seed);
    run a = run_new(env, &s), b = run_new(env, &s), c = run_new(env, &s);
    const cl_mem pos = binv_kv_batch_positions(s.batch);
    const size_t q_off = 0, k_off = s.qw, v_off = s.qw + s.kvd;
    binv_kv_cache cache = {dt, s.pages, sh->kvh, sh->hd, a.k, a.v};
    assert_int_equal(binv_rope(env->ctx, env->queue, dt, s.T, sh->heads, sh->hd, a.qkv, q_off,
                               s.ld, pos, 0, THETA, 0, NULL, NULL), BINV_SUCCESS);
    assert_int_equal(binv_rope(env->ctx, env->queue, dt, s.T, sh->kvh, sh->hd, a.qkv, k_off, s.ld,
                               pos, 0, THETA, 0, NULL, NULL), BINV_SUCCESS);
    assert_int_equal(binv_kv_append(env->ctx, env->queue, &cache, s.batch, a.qkv, k_off, s.ld,
                                    a.qkv, v_off, s.ld, 0, NULL, NULL), BINV_SUCCESS);
    cache.k = b.k;
    cache.v = b.v;
    assert_int_equal(binv_kv_append_rope_q(env->ctx, env->queue, &cache, s.batch, sh->heads,
                                           b.qkv, q_off, s.ld, b.qkv, k_off, s.ld, b.qkv, v_off,
                                           s.ld, THETA, 0, NULL, NULL), BINV_SUCCESS);
    cache.k = c.k;
    cache.v = c.v;
    assert_int_equal(binv_kv_append_rope(env->ctx, env->queue, &cache, s.batch, c.qkv, k_off,
                                         s.ld, c.qkv, v_off, s.ld, THETA, 0, NULL, NULL),
                     BINV_SUCCESS);
    const size_t pb = s.pool_elems * s.es, qb = s.T * s.ld * s.es;
    expect_same(env, a.k, b.k, pb, "K pool (rope_q)", sh->name, dt);
    expect_same(env, a.v, b.v, pb, "V pool (rope_q)", sh->name, dt);
    expect_same(env, a.k, c.k, pb, "K pool (rope)", sh->name, dt);
    expect_same(env, a.v, c.v, pb, "V pool (rope)", sh->name, dt);
    /* q columns: b = a; k columns of b: the input; c's qkv: all the input. */
    unsigned char *ha = malloc(qb), *hb = malloc(qb), *hc = malloc(qb);
    test_read(env, a.qkv, qb, ha);
    test_read(env, b.qkv, qb, hb);
    test_read(env, c.qkv, qb, hc);
    assert_memory_equal(hc, s.qkv0, qb);
    for (size_t t = 0; t < s.T; t++) {
        const size_t row = t * s.ld * s.es;
        if (memcmp(hb + row, ha + row, s.qw * s.es))
            fail_msg("q row %zu differs (%s, %s)", t, sh->name, hx_dtype_name(dt));
        assert_memory_equal(hb + row + s.qw * s.es, s.qkv0 + row + s.qw * s.es,
                            (s.ld - s.qw) * s.es);
    }
    /* Attention over the fused-written cache with the fused q: same bits. */
    cache.k = a.k;
    unsigned char *oa = attend(env, &s, sh, &a, &cache), *ob = attend(env, &s, sh, &b, &cache);
    if (memcmp(oa, ob, s.T * s.qw * s.es))
        fail_msg("attention output differs (%s, %s)", sh->name, hx_dtype_name(dt));
    free(oa);
    free(ob);
    free(ha);
    free(hb);
    free(hc);
    run_free(&a);
    run_free(&b);
    run_free(&c);
    step_free(&s);
}

static void test_fused_rope_append_bits(void **state) {
    test_env *env = *state;
    for (size_t d = 0; d < sizeof DTYPES / sizeof *DTYPES; d++)
        for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++)
            check_shape(env, &SHAPES[i], DTYPES[d], 17 + 5 * i + d);
}

/* Each bad argument fails with its status and a message, and nothing is
 * written: pools and qkv keep their bits. */
static void test_fused_bad_input(void **state) {
    test_env *env = *state;
    const shape *sh = &SHAPES[2];
    step s;
    step_init(env, &s, sh, BINV_DTYPE_F32, 99);
    run r = run_new(env, &s);
    binv_context *c = env->ctx;
    cl_command_queue q = env->queue;
    binv_kv_batch *b = s.batch;
    const size_t ld = s.ld, ko = s.qw, vo = s.qw + s.kvd;
    const binv_kv_cache ok = {BINV_DTYPE_F32, s.pages, sh->kvh, sh->hd, r.k, r.v};
    binv_kv_cache bad = ok;
    cl_mem x = r.qkv;
#define APPEND(cache, kb, k_off, ldk, th)                                                           \
    binv_kv_append_rope(c, q, cache, b, kb, k_off, ldk, x, vo, ld, th, 0, NULL, NULL)
#define APPEND_Q(cache, h, qb, q_off, ldq, th)                                                      \
    binv_kv_append_rope_q(c, q, cache, b, h, qb, q_off, ldq, x, ko, ld, x, vo, ld, th, 0, NULL,   \
                          NULL)
    assert_int_equal(binv_kv_append_rope(NULL, q, &ok, b, x, ko, ld, x, vo, ld, THETA, 0, NULL,
                                         NULL), BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_kv_append_rope_q(NULL, q, &ok, b, sh->heads, x, 0, ld, x, ko, ld, x, vo,
                                           ld, THETA, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT);
    const struct {
        binv_status got, want;
        const char *what;
    } cases[] = {
        {APPEND(NULL, x, ko, ld, THETA), BINV_ERROR_INVALID_ARGUMENT, "cache NULL"},
        {binv_kv_append_rope(c, q, &ok, b, x, ko, ld, x, vo, ld, THETA, 1, NULL, NULL),
         BINV_ERROR_INVALID_ARGUMENT, "wait list NULL"},
        {APPEND(&ok, x, ko, ld, 1.0f), BINV_ERROR_INVALID_VALUE, "theta 1"},
        {APPEND(&ok, x, ko, ld, INFINITY), BINV_ERROR_INVALID_VALUE, "theta inf"},
        {APPEND(&ok, x, ko, ld, NAN), BINV_ERROR_INVALID_VALUE, "theta NaN"},
        {APPEND_Q(&ok, sh->heads, x, 0, ld, 0.5f), BINV_ERROR_INVALID_VALUE, "q: theta 0.5"},
        {APPEND(&ok, x, ko, s.kvd - 1, THETA), BINV_ERROR_INVALID_LEADING_DIMENSION, "ldk"},
        {APPEND(&ok, x, ko + ld, ld, THETA), BINV_ERROR_BUFFER_TOO_SMALL, "k_new past its end"},
        {APPEND(&ok, r.k, 0, ld, THETA), BINV_ERROR_ALIASING, "k_new = cache->k"},
        {APPEND(&ok, r.v, 0, ld, THETA), BINV_ERROR_ALIASING, "k_new = cache->v"},
        {APPEND_Q(&ok, 0, x, 0, ld, THETA), BINV_ERROR_INVALID_DIMENSION, "q heads 0"},
        {APPEND_Q(&ok, sh->heads, x, 0, s.qw - 1, THETA), BINV_ERROR_INVALID_LEADING_DIMENSION,
         "ldq"},
        {APPEND_Q(&ok, sh->heads, x, 1, ld, THETA), BINV_ERROR_ALIASING, "q overlaps k_new"},
        {APPEND_Q(&ok, sh->kvh, x, vo, ld, THETA), BINV_ERROR_ALIASING, "q = v_new"},
        {APPEND_Q(&ok, sh->heads, r.v, 0, ld, THETA), BINV_ERROR_ALIASING, "q in cache->v"},
        {APPEND_Q(&ok, sh->heads, x, ld, ld, THETA), BINV_ERROR_BUFFER_TOO_SMALL,
         "q past its end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].got != cases[i].want)
            fail_msg("%s: status %d, expected %d", cases[i].what, (int)cases[i].got,
                     (int)cases[i].want);
    }
    /* Cache arguments: odd head_dim (binv_rope's check), dtype, pools. */
    bad.head_dim = 3;
    bad.kv_heads = 1;
    assert_int_equal(APPEND(&bad, x, ko, ld, THETA), BINV_ERROR_INVALID_DIMENSION);
    assert_non_null(strstr(binv_context_last_error(c), "binv_kv_append_rope"));
    bad = ok;
    bad.dtype = (binv_dtype)9;
    assert_int_equal(APPEND(&bad, x, ko, ld, THETA), BINV_ERROR_UNSUPPORTED_DTYPE);
    bad = ok;
    bad.v = r.k;
    assert_int_equal(APPEND(&bad, x, ko, ld, THETA), BINV_ERROR_ALIASING);
    assert_int_equal(APPEND_Q(&bad, sh->heads, x, 0, ld, THETA), BINV_ERROR_ALIASING);
    assert_non_null(strstr(binv_context_last_error(c), "binv_kv_append_rope_q"));
#undef APPEND
#undef APPEND_Q
    clFinish(q);
    unsigned char *h = malloc(s.pool_elems * 4);
    test_read(env, r.k, s.pool_elems * 4, h);
    assert_memory_equal(h, s.pool0, s.pool_elems * 4);
    test_read(env, r.v, s.pool_elems * 4, h);
    assert_memory_equal(h, s.pool0, s.pool_elems * 4);
    free(h);
    h = malloc(s.T * ld * 4);
    test_read(env, r.qkv, s.T * ld * 4, h);
    assert_memory_equal(h, s.qkv0, s.T * ld * 4);
    free(h);
    run_free(&r);
    step_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_bad_input),
        cmocka_unit_test(test_fused_rope_append_bits),
    };
    return cmocka_run_group_tests_name("fused", tests, test_env_setup, test_env_teardown);
}
