/* Fault injection over a run of every op family (tests/fault/clshim.h).
 *
 * The run: binv_context_create, then for each dtype (f32, f16, bf16)
 * binv_gemm (split-K sized), the eight row reductions, binv_swiglu,
 * binv_swiglu_backward (dup in place over dy), binv_rmsnorm_backward (two
 * row chunks, accumulating), binv_kv_batch_create, binv_kv_append, binv_rope
 * and binv_rope_backward (positions of the batch),
 * binv_attention (a 300-token context: more than one key chunk),
 * binv_kv_append_rope_q (RoPE of q and K_new, the append, one launch), a GEMM that
 * returns an event, binv_kv_batch_destroy; then binv_context_destroy.
 *
 * A clean armed run counts its F fallible OpenCL calls and records the bytes
 * of every buffer before and after each call.  Then for N = first, first +
 * stride, ... <= F, a run in which the N-th fallible call fails must show:
 *  - no crash;
 *  - the call that met the fault returns a non-success binv_status (or, if
 *    the library recovered, success with the clean run's bits), with a
 *    message, *event NULL and (binv_kv_batch_create) *out NULL;
 *  - every buffer byte-for-byte as before that call (no partial output);
 *  - after the fault, a full run on the same binv_context (a new one if its
 *    creation failed) gives the clean run's bits;
 *  - after binv_context_destroy, no OpenCL object with an armed reference
 *    left and no host block the library allocated left (malloc wrappers).
 * Usage: fault_run [--stride S] [--first N] [--last N] [--dtypes 1|3] [-v]
 * Prints the totals; exit 0 when every N passed, 1 otherwise, 77 when there
 * is no OpenCL device. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binv/binv.h"
#include "clshim.h"

#define MAXBUF 128
#define MAXOPS 64

static cl_device_id dev;
static cl_context clctx;
static cl_command_queue queue;
static int verbose;
static int ndtypes = 3;

typedef struct buf {
    cl_mem m;
    size_t size;
    unsigned char *init;
} buf;
static buf bufs[MAXBUF];
static int nbufs;
static size_t total_bytes;

/* ---- deterministic data ---------------------------------------------------- */
static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t next32(void) {
    rng += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)(z ^ (z >> 31));
}
/* Values of magnitude in [1/4, 4) with random sign and mantissa bits. */
static void fill(binv_dtype dt, unsigned char *p, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t r = next32();
        if (dt == BINV_DTYPE_F32) {
            uint32_t v = (r & 0x80000000u) | ((125u + r % 4) << 23) | (r >> 9 & 0x7fffff);
            memcpy(p + 4 * i, &v, 4);
        } else if (dt == BINV_DTYPE_BF16) {
            uint16_t v = (uint16_t)((r & 0x8000u) | ((125u + r % 4) << 7) | (r >> 9 & 0x7f));
            memcpy(p + 2 * i, &v, 2);
        } else {
            uint16_t v = (uint16_t)((r & 0x8000u) | ((13u + r % 4) << 10) | (r >> 9 & 0x3ff));
            memcpy(p + 2 * i, &v, 2);
        }
    }
}
static size_t esize(binv_dtype dt) { return dt == BINV_DTYPE_F32 ? 4 : 2; }

static int mkbuf(binv_dtype dt, size_t elems, int zero) {
    buf *b = &bufs[nbufs];
    b->size = elems * esize(dt);
    b->init = malloc(b->size);
    if (zero) memset(b->init, 0xA5, b->size); /* outputs: a canary pattern */
    else fill(dt, b->init, elems);
    cl_int err;
    b->m = clCreateBuffer(clctx, CL_MEM_READ_WRITE, b->size, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "fault_run: clCreateBuffer: %d\n", err);
        exit(1);
    }
    total_bytes += b->size;
    return nbufs++;
}

static void upload_all(void) {
    for (int i = 0; i < nbufs; i++)
        if (clEnqueueWriteBuffer(queue, bufs[i].m, CL_TRUE, 0, bufs[i].size, bufs[i].init, 0, NULL,
                                 NULL) != CL_SUCCESS) {
            fprintf(stderr, "fault_run: upload failed\n");
            exit(1);
        }
}
static void snapshot(unsigned char *dst) {
    clFinish(queue);
    size_t o = 0;
    for (int i = 0; i < nbufs; i++) {
        if (clEnqueueReadBuffer(queue, bufs[i].m, CL_TRUE, 0, bufs[i].size, dst + o, 0, NULL,
                                NULL) != CL_SUCCESS) {
            fprintf(stderr, "fault_run: read-back failed\n");
            exit(1);
        }
        o += bufs[i].size;
    }
}

/* ---- the op-family run ------------------------------------------------------- */
enum { T_GEMM, T_RMS, T_ADDRMS, T_LN, T_SM, T_LSM, T_RSUM, T_RMEAN, T_SWIGLU, T_BATCH, T_APPEND,
       T_ROPE, T_ATTN, T_APPEND_ROPE, T_GEMM_EV, T_BATCH_DESTROY, T_SLSM, T_RMSBWD, T_SWIGLU_BWD,
       T_ROPE_BWD };
static const char *const TNAME[] = {"binv_gemm", "binv_rmsnorm", "binv_add_rmsnorm",
                                    "binv_layernorm", "binv_softmax", "binv_log_softmax",
                                    "binv_row_sum", "binv_row_mean", "binv_swiglu",
                                    "binv_kv_batch_create", "binv_kv_append", "binv_rope",
                                    "binv_attention", "binv_kv_append_rope_q", "binv_gemm(event)",
                                    "binv_kv_batch_destroy", "binv_selected_log_softmax",
                                    "binv_rmsnorm_backward", "binv_swiglu_backward",
                                    "binv_rope_backward"};

typedef struct dset {
    binv_dtype dt;
    int a, b, c, x, w, gam, bet, y1, y2, y3, y4, y5, s1, s2, s3, ids, x2, res, gate, up, y6, kp,
        vp, kn, vn, q, o, c2, bx, bdy, bdx, bdw, sdy, sdg, rq;
} dset;
static dset ds[3];

enum { GM = 3, GN = 20, GK = 600, RR = 3, RC = 70, SC = 24, BR = 70 };
enum { PAGES = 24, KVH = 2, HD = 16, HEADS = 4, SEQS = 2, MAXP = 20 };
static const cl_uint QL[SEQS] = {3, 1}, CL_[SEQS] = {300, 5};
static cl_uint PT[SEQS * MAXP];
enum { TOK = 4 };

static void make_buffers(void) {
    for (int d = 0; d < ndtypes; d++) {
        dset *s = &ds[d];
        s->dt = (binv_dtype)(d + 1);
        binv_dtype dt = s->dt;
        s->a = mkbuf(dt, GM * GK, 0);
        s->b = mkbuf(dt, GN * GK, 0);
        s->c = mkbuf(dt, GM * GN, 0);
        s->c2 = mkbuf(dt, GM * GN, 0);
        s->x = mkbuf(dt, RR * RC, 0);
        s->w = mkbuf(dt, RC, 0);
        s->gam = mkbuf(dt, RC, 0);
        s->bet = mkbuf(dt, RC, 0);
        s->y1 = mkbuf(dt, RR * RC, 1);
        s->y2 = mkbuf(dt, RR * RC, 1);
        s->y3 = mkbuf(dt, RR * RC, 1);
        s->y4 = mkbuf(dt, RR * RC, 1);
        s->y5 = mkbuf(dt, RR * RC, 1);
        s->s1 = mkbuf(BINV_DTYPE_F32, RR, 1);
        s->s2 = mkbuf(BINV_DTYPE_F32, RR, 1);
        s->s3 = mkbuf(BINV_DTYPE_F32, RR, 1);
        s->ids = mkbuf(BINV_DTYPE_F32, RR, 0); /* cl_uint columns, the last out of range */
        for (cl_uint i = 0; i < RR; i++) {
            const cl_uint id = i + 1 < RR ? (next32() % RC) : RC;
            memcpy(bufs[s->ids].init + 4 * i, &id, 4);
        }
        s->x2 = mkbuf(dt, RR * RC, 0);
        s->res = mkbuf(dt, RR * RC, 0);
        s->gate = mkbuf(dt, RR * SC, 0);
        s->up = mkbuf(dt, RR * SC, 0);
        s->y6 = mkbuf(dt, RR * SC, 1);
        s->sdy = mkbuf(dt, RR * SC, 0); /* dy, then dup (in place) */
        s->sdg = mkbuf(dt, RR * SC, 1);
        s->rq = mkbuf(dt, TOK * HEADS * HD, 0);
        s->kp = mkbuf(dt, PAGES * BINV_KV_PAGE_SIZE * KVH * HD, 0);
        s->vp = mkbuf(dt, PAGES * BINV_KV_PAGE_SIZE * KVH * HD, 0);
        s->kn = mkbuf(dt, TOK * KVH * HD, 0);
        s->vn = mkbuf(dt, TOK * KVH * HD, 0);
        s->q = mkbuf(dt, TOK * HEADS * HD, 0);
        s->o = mkbuf(dt, TOK * HEADS * HD, 1);
        s->bx = mkbuf(dt, BR * SC, 0);
        s->bdy = mkbuf(dt, BR * SC, 0);
        s->bdx = mkbuf(dt, BR * SC, 1);
        s->bdw = mkbuf(BINV_DTYPE_F32, SC, 1);
    }
    for (int i = 0; i < MAXP; i++) {
        PT[i] = (cl_uint)(MAXP - 1 - i); /* sequence 0: pages 19..0 (not in order) */
        PT[MAXP + i] = 23 - (cl_uint)(i % 4);
    }
}

typedef struct run_state {
    binv_context *ctx;
    binv_kv_batch *batch;
} run_state;

#define M(i) bufs[s->i].m

/* One call of the run; returns its status.  *ev_out: the event it returned. */
static binv_status do_op(run_state *rs, int d, int t, cl_event *ev_out, int *batch_out_bad) {
    const dset *s = &ds[d];
    binv_context *ctx = rs->ctx;
    const binv_dtype dt = s->dt;
    const float eps = 1e-5f;
    *ev_out = NULL;
    binv_kv_cache cache = {dt, PAGES, KVH, HD, M(kp), M(vp)};
    switch (t) {
    case T_GEMM:
        return binv_gemm(ctx, queue, dt, BINV_NO_TRANS, BINV_TRANS, GM, GN, GK, 1.0f, M(a), 0, GK,
                         M(b), 0, GK, 0.0f, M(c), 0, GN, 0, NULL, NULL);
    case T_GEMM_EV:
        return binv_gemm(ctx, queue, dt, BINV_NO_TRANS, BINV_TRANS, GM, GN, GK, 0.5f, M(a), 0, GK,
                         M(b), 0, GK, 1.0f, M(c2), 0, GN, 0, NULL, ev_out);
    case T_RMS:
        return binv_rmsnorm(ctx, queue, dt, RR, RC, M(x), 0, RC, M(w), 0, eps, M(y1), 0, RC, 0,
                            NULL, NULL);
    case T_ADDRMS:
        return binv_add_rmsnorm(ctx, queue, dt, RR, RC, M(x2), 0, RC, M(res), 0, RC, M(w), 0, eps,
                                M(y2), 0, RC, 0, NULL, NULL);
    case T_LN:
        return binv_layernorm(ctx, queue, dt, RR, RC, M(x), 0, RC, M(gam), 0, M(bet), 0, eps,
                              M(y3), 0, RC, 0, NULL, NULL);
    case T_SM:
        return binv_softmax(ctx, queue, dt, RR, RC, M(x), 0, RC, M(y4), 0, RC, 0, NULL, NULL);
    case T_LSM:
        return binv_log_softmax(ctx, queue, dt, RR, RC, M(x), 0, RC, M(y5), 0, RC, 0, NULL, NULL);
    case T_SLSM:
        return binv_selected_log_softmax(ctx, queue, dt, RR, RC, M(x), 0, RC, M(ids), 0, M(s3), 0,
                                         0, NULL, NULL);
    case T_RSUM:
        return binv_row_sum(ctx, queue, dt, RR, RC, M(x), 0, RC, M(s1), 0, 0, NULL, NULL);
    case T_RMEAN:
        return binv_row_mean(ctx, queue, dt, RR, RC, M(x), 0, RC, M(s2), 0, 0, NULL, NULL);
    case T_SWIGLU:
        return binv_swiglu(ctx, queue, dt, RR, SC, M(gate), 0, SC, M(up), 0, SC, M(y6), 0, SC, 0,
                           NULL, NULL);
    case T_SWIGLU_BWD:
        return binv_swiglu_backward(ctx, queue, dt, RR, SC, M(gate), 0, SC, M(up), 0, SC, M(sdy),
                                    0, SC, M(sdg), 0, SC, M(sdy), 0, SC, 0, NULL, NULL);
    case T_RMSBWD:
        return binv_rmsnorm_backward(ctx, queue, dt, BR, SC, M(bx), 0, SC, M(w), 0, eps, M(bdy),
                                     0, SC, M(bdx), 0, SC, M(bdw), 0, 1, 0, NULL, NULL);
    case T_BATCH: {
        binv_kv_batch *b = (binv_kv_batch *)(uintptr_t)1;
        binv_status st =
            binv_kv_batch_create(ctx, queue, PAGES, SEQS, QL, CL_, PT, MAXP, &b);
        if (st == BINV_SUCCESS) rs->batch = b;
        else if (b != NULL) *batch_out_bad = 1;
        return st;
    }
    case T_APPEND:
        return binv_kv_append(ctx, queue, &cache, rs->batch, M(kn), 0, KVH * HD, M(vn), 0,
                              KVH * HD, 0, NULL, NULL);
    case T_ROPE:
        return binv_rope(ctx, queue, dt, TOK, HEADS, HD, M(q), 0, HEADS * HD,
                         binv_kv_batch_positions(rs->batch), 0, 10000.0f, 0, NULL, NULL);
    case T_ROPE_BWD:
        return binv_rope_backward(ctx, queue, dt, TOK, HEADS, HD, M(rq), 0, HEADS * HD,
                                  binv_kv_batch_positions(rs->batch), 0, 10000.0f, 0, NULL, NULL);
    case T_ATTN:
        return binv_attention(ctx, queue, &cache, rs->batch, HEADS, 0.25f, M(q), 0, HEADS * HD,
                              M(o), 0, HEADS * HD, 0, NULL, NULL);
    case T_APPEND_ROPE:
        return binv_kv_append_rope_q(ctx, queue, &cache, rs->batch, HEADS, M(q), 0, HEADS * HD,
                                     M(kn), 0, KVH * HD, M(vn), 0, KVH * HD, 10000.0f, 0, NULL,
                                     NULL);
    case T_BATCH_DESTROY:
        binv_kv_batch_destroy(rs->batch);
        rs->batch = NULL;
        return BINV_SUCCESS;
    }
    return BINV_ERROR_INVALID_ARGUMENT;
}
static const int ORDER[] = {T_GEMM, T_RMS, T_ADDRMS, T_LN, T_SM, T_LSM, T_SLSM, T_RSUM, T_RMEAN,
                            T_SWIGLU, T_SWIGLU_BWD, T_RMSBWD, T_BATCH, T_APPEND, T_ROPE,
                            T_ROPE_BWD, T_ATTN, T_APPEND_ROPE, T_GEMM_EV, T_BATCH_DESTROY};
#define NORDER ((int)(sizeof ORDER / sizeof ORDER[0]))

/* ---- reference and faulted runs ---------------------------------------------- */
static const char *op_name(int i);
static int nops;                 /* calls after binv_context_create */
static unsigned char *ref_state; /* (nops + 1) snapshots: before call i, and the end */
static unsigned char *cur;

static binv_status create_ctx(binv_context **out) {
    binv_options o = {sizeof o, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    return binv_context_create(clctx, dev, &o, out);
}

/* A full run on rs->ctx (armed).  record: store the snapshots.  Returns the
 * index of the first failing call, or -1 (its status in *st_out). */
static int full_run(run_state *rs, int record, binv_status *st_out, int *mismatch_at) {
    *mismatch_at = -1;
    upload_all();
    if (record) snapshot(ref_state);
    for (int i = 0; i < nops; i++) {
        int d = i / NORDER, t = ORDER[i % NORDER], bad_out = 0;
        cl_event ev;
        clshim_arm(1);
        binv_status st = do_op(rs, d, t, &ev, &bad_out);
        if (ev) clReleaseEvent(ev);
        clshim_arm(0);
        if (st != BINV_SUCCESS) {
            *st_out = st;
            return i;
        }
        if (record) snapshot(ref_state + (size_t)(i + 1) * total_bytes);
        else if (*mismatch_at < 0 || verbose) {
            snapshot(cur);
            const unsigned char *ref = ref_state + (size_t)(i + 1) * total_bytes;
            if (memcmp(cur, ref, total_bytes)) {
                if (*mismatch_at < 0) *mismatch_at = i;
                if (verbose) {
                    size_t o = 0;
                    for (int b = 0; b < nbufs; o += bufs[b].size, b++)
                        for (size_t k = 0; k < bufs[b].size; k++)
                            if (cur[o + k] != ref[o + k]) {
                                fprintf(stderr, "fault_run: after %s buffer %d byte %zu of %zu "
                                        "differs\n", op_name(i), b, k, bufs[b].size);
                                break;
                            }
                }
            }
        }
    }
    return -1;
}

static void teardown(run_state *rs) {
    clshim_arm(1);
    binv_kv_batch_destroy(rs->batch);
    binv_context_destroy(rs->ctx);
    clshim_arm(0);
    rs->batch = NULL;
    rs->ctx = NULL;
}

static const char *op_name(int i) {
    static char b[64];
    if (i < 0) return "binv_context_create";
    if (i >= nops) return "no call (the library recovered)";
    snprintf(b, sizeof b, "%s/%s", TNAME[ORDER[i % NORDER]],
             (const char *[]){"f32", "f16", "bf16"}[i / NORDER]);
    return b;
}

typedef struct tally {
    char name[48];
    unsigned long n, passthrough, mapped, recovered;
} tally;
static tally tallies[64];
static int ntallies;
static tally *tally_for(const char *name) {
    for (int i = 0; i < ntallies; i++)
        if (!strcmp(tallies[i].name, name)) return &tallies[i];
    snprintf(tallies[ntallies].name, sizeof tallies[0].name, "%s", name);
    return &tallies[ntallies++];
}

/* Options and totals of a run. */
static unsigned long opt_stride = 1, opt_first = 1, opt_last = 0;
static int strict_status;
static unsigned long tried, failures, surfaced, recovered, passthrough;

static int parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--stride") && i + 1 < argc) opt_stride = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--first") && i + 1 < argc) opt_first = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--last") && i + 1 < argc) opt_last = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dtypes") && i + 1 < argc) ndtypes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--strict-status")) strict_status = 1;
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else {
            fprintf(stderr, "usage: fault_run [--stride S] [--first N] [--last N] [--dtypes 1|3] "
                            "[--strict-status] [-v]\n");
            return 2;
        }
    }
    if (opt_stride < 1) opt_stride = 1;
    if (ndtypes < 1 || ndtypes > 3) ndtypes = 3;
    return 0;
}

/* The device (BINV_TEST_DEVICE=gpu, else a CPU, else any), its context and
 * queue.  0, 77 (no device: skipped) or 1. */
static int open_device(void) {
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0) {
        printf("fault_run: no OpenCL platform: skipped\n");
        return 77;
    }
    int found = 0;
    const char *want = getenv("BINV_TEST_DEVICE");
    cl_device_type ty = want && !strcmp(want, "gpu") ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
    for (cl_uint i = 0; i < np && !found; i++)
        found = clGetDeviceIDs(plats[i], ty, 1, &dev, NULL) == CL_SUCCESS;
    for (cl_uint i = 0; i < np && !found; i++)
        found = clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 1, &dev, NULL) == CL_SUCCESS;
    if (!found) {
        printf("fault_run: no OpenCL device: skipped\n");
        return 77;
    }
    cl_int err;
    clctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    if (err == CL_SUCCESS) queue = clCreateCommandQueue(clctx, dev, 0, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "fault_run: OpenCL setup failed: %d\n", err);
        return 1;
    }
    return 0;
}

/* Two clean runs: the first records the buffer states between calls and must
 * leak nothing, the second must make the same fallible calls with the same
 * bits.  Returns the number of fallible calls F, 0 on failure. */
static unsigned long clean_runs(void) {
    const int heap = clshim_heap_tracking();
    clshim_reset();
    run_state rs = {0};
    clshim_arm(1);
    binv_status st = create_ctx(&rs.ctx);
    clshim_arm(0);
    int mm;
    binv_status fst = 0;
    if (st != BINV_SUCCESS || full_run(&rs, 1, &fst, &mm) >= 0) {
        fprintf(stderr, "fault_run: the clean run failed (%d %d): %s\n", st, fst,
                binv_context_last_error(rs.ctx));
        return 0;
    }
    teardown(&rs);
    const unsigned long F = clshim_calls();
    long objs = clshim_objects_outstanding(1), blocks = clshim_heap_outstanding();
    printf("fault_run: clean run: %lu fallible OpenCL calls, %d library calls, %zu buffer bytes, "
           "heap accounting %s; after destroy: %ld objects, %ld host blocks left\n",
           F, nops + 1, total_bytes, heap ? "on" : "off", objs, blocks);
    if (objs || blocks) {
        printf("FAIL: the clean run leaks\n");
        return 0;
    }
    /* A second clean run must count the same calls (else N is meaningless). */
    clshim_reset();
    clshim_arm(1);
    st = create_ctx(&rs.ctx);
    clshim_arm(0);
    if (st != BINV_SUCCESS || full_run(&rs, 0, &fst, &mm) >= 0 || mm >= 0) {
        printf("FAIL: a second clean run differs (status %d, mismatch at %d)\n", st, mm);
        return 0;
    }
    teardown(&rs);
    if (clshim_calls() != F) {
        printf("FAIL: the second clean run made %lu fallible calls, the first %lu\n",
               clshim_calls(), F);
        return 0;
    }
    return F;
}

/* After call `at` (-1: context creation) returned fst for a fault ferr
 * injected into fname: outputs untouched, a message stored, and (strict) the
 * injected code passed through.  0, or 1 with why. */
static int check_failed_call(const run_state *rs, int at, binv_status fst, const char *fname,
                             int ferr, char *why, size_t why_size) {
    /* Outputs untouched: the state before the call. */
    snapshot(cur);
    const unsigned char *pre = ref_state + (size_t)(at < 0 ? 0 : at) * total_bytes;
    /* binv.h's one exception to all-or-nothing: binv_attention whose second
     * (merge) clEnqueueNDRangeKernel fails after the first ran may leave o's
     * rows of single-split tokens at their final values.  Those bytes may
     * hold the clean run's result instead. */
    if (at >= 0 && ORDER[at % NORDER] == T_ATTN && !strcmp(fname, "clEnqueueNDRangeKernel")) {
        const unsigned char *post = pre + total_bytes;
        size_t off = 0;
        for (int b = 0; b < ds[at / NORDER].o; b++) off += bufs[b].size;
        for (size_t k = off; k < off + bufs[ds[at / NORDER].o].size; k++)
            if (cur[k] == post[k]) cur[k] = pre[k];
    }
    if (memcmp(cur, pre, total_bytes)) {
        size_t k = 0;
        while (cur[k] == pre[k]) k++;
        snprintf(why, why_size, "%s failed (%d) but changed buffer bytes (first at %zu)",
                 op_name(at), fst, k);
        return 1;
    }
    if (rs->ctx && !binv_context_last_error(rs->ctx)[0]) {
        snprintf(why, why_size, "%s failed (%d) without a message", op_name(at), fst);
        return 1;
    }
    if (strict_status && fst != ferr &&
        !(ferr == CL_OUT_OF_HOST_MEMORY && fst == BINV_ERROR_OUT_OF_HOST_MEMORY) &&
        fst != BINV_ERROR_BUILD_FAILED) {
        snprintf(why, why_size, "%s returned %d (%s) for an injected %d in %s", op_name(at), fst,
                 binv_status_string(fst), ferr, fname);
        return 1;
    }
    return 0;
}

/* Recovery: a full clean run on the same context (a new one if creation
 * failed) gives the clean bits.  0, or 1 with why. */
static int check_recovery(run_state *rs, char *why, size_t why_size) {
    clshim_fail_at(0);
    if (rs->batch) {
        clshim_arm(1);
        binv_kv_batch_destroy(rs->batch);
        clshim_arm(0);
        rs->batch = NULL;
    }
    if (!rs->ctx) {
        clshim_arm(1);
        binv_status st = create_ctx(&rs->ctx);
        clshim_arm(0);
        if (st != BINV_SUCCESS) {
            snprintf(why, why_size, "binv_context_create after the fault: %d", st);
            return 1;
        }
    }
    int mism = -1;
    binv_status rst = 0;
    int i = full_run(rs, 0, &rst, &mism);
    if (i >= 0) {
        snprintf(why, why_size, "the run after the fault failed at %s: %d (%s)", op_name(i), rst,
                 binv_context_last_error(rs->ctx));
        return 1;
    }
    if (mism >= 0) {
        snprintf(why, why_size, "the run after the fault differs from the clean run after %s",
                 op_name(mism));
        return 1;
    }
    return 0;
}

/* One run with the n-th fallible call failed: the fault surfaces as a status
 * with outputs untouched or the library recovers, then a clean run gives the
 * clean bits and nothing leaks. */
static void inject(unsigned long n) {
    tried++;
    int fail = 0;
    char why[512] = "";
    clshim_reset();
    clshim_fail_at(n);
    run_state rs = {0};
    upload_all();
    binv_context *made = (binv_context *)(uintptr_t)1;
    clshim_arm(1);
    binv_status st = create_ctx(&made);
    clshim_arm(0);
    int at = -2; /* index of the call that failed: -1 = context creation */
    binv_status fst = BINV_SUCCESS;
    const char *fname = NULL;
    int ferr = 0;
    if (st != BINV_SUCCESS) {
        at = -1;
        fst = st;
        if (made != NULL) {
            fail = 1;
            snprintf(why, sizeof why, "binv_context_create failed but *out is not NULL");
        }
    } else {
        rs.ctx = made;
        int mism = -1;
        int i = full_run(&rs, 0, &fst, &mism);
        if (i >= 0) at = i;
        if (mism >= 0 && !fail) {
            fail = 1;
            snprintf(why, sizeof why, "after %s (which succeeded) the bits differ from the clean run",
                     op_name(mism));
        }
    }
    if (!clshim_fired(&fname, &ferr)) {
        printf("FAIL N=%lu: the fault never fired (the run made fewer calls)\n", n);
        failures++;
        teardown(&rs);
        return;
    }
    tally *tl = tally_for(fname);
    tl->n++;
    if (at >= -1) {
        surfaced++;
        if (fst == ferr) passthrough++, tl->passthrough++;
        else tl->mapped++;
        if (!fail) fail = check_failed_call(&rs, at, fst, fname, ferr, why, sizeof why);
    } else {
        recovered++;
        tl->recovered++;
    }
    if (verbose)
        printf("N=%lu: %s -> %s: %s %d\n", n, fname, op_name(at < -1 ? nops : at),
               at >= -1 ? "status" : "recovered", fst);
    if (!fail) fail = check_recovery(&rs, why, sizeof why);
    teardown(&rs);
    long lo = clshim_objects_outstanding(0), lb = clshim_heap_outstanding();
    if (lo) clshim_objects_outstanding(1); /* name them */
    if (!fail && (lo || lb)) {
        fail = 1;
        snprintf(why, sizeof why, "after destroy: %ld OpenCL objects with a non-zero reference "
                 "balance (leaked or released once too often), %ld host blocks", lo, lb);
    }
    if (fail) {
        failures++;
        printf("FAIL N=%lu (fault in %s -> %s, error %d, status %d): %s\n", n, fname,
               op_name(at < -1 ? nops : at), ferr, fst, why);
        /* Later N would report the same leak again: start them clean. */
        clshim_ledger_clear();
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (parse_args(argc, argv)) return 2;
    /* Line-buffered: the totals must survive a crash in a later cleanup. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = open_device();
    if (rc) return rc;
    make_buffers();
    nops = ndtypes * NORDER;
    ref_state = malloc((size_t)(nops + 1) * total_bytes);
    cur = malloc(total_bytes);
    const unsigned long F = clean_runs();
    if (!F) return 1;
    unsigned long last = opt_last == 0 || opt_last > F ? F : opt_last;
    for (unsigned long n = opt_first; n <= last; n += opt_stride) inject(n);
    printf("fault_run: injected %lu faults (N = %lu..%lu step %lu of %lu fallible calls): "
           "%lu surfaced as a status (%lu the injected OpenCL code), %lu recovered with the "
           "clean bits, %lu failures\n",
           tried, opt_first, last, opt_stride, F, surfaced, passthrough, recovered, failures);
    printf("%-32s %6s %12s %8s %10s\n", "faulted call", "faults", "passthrough", "mapped",
           "recovered");
    for (int i = 0; i < ntallies; i++)
        printf("%-32s %6lu %12lu %8lu %10lu\n", tallies[i].name, tallies[i].n,
               tallies[i].passthrough, tallies[i].mapped, tallies[i].recovered);
    for (int i = 0; i < nbufs; i++) {
        clReleaseMemObject(bufs[i].m);
        free(bufs[i].init);
    }
    free(ref_state);
    free(cur);
    clReleaseCommandQueue(queue);
    clReleaseContext(clctx);
    return failures ? 1 : 0;
}
