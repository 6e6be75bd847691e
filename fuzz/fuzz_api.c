/* libFuzzer harness over the arguments of libbinv-cl's public API.
 *
 * Build (fuzz/build.sh): clang-15 -fsanitize=fuzzer,address,undefined, linked
 * with the library's sources.  Run: fuzz_api fuzz/corpus/api [libFuzzer flags].
 *
 * Each input is decoded into a short sequence of calls to every public entry
 * point (binv_gemm, the row reductions, binv_selected_log_softmax,
 * binv_rmsnorm_backward, binv_swiglu(_backward), the KV batch,
 * binv_rope(_backward), binv_kv_append, binv_kv_append_rope(_q),
 * binv_attention, binv_context_create) with hostile
 * sizes (zero, huge, products that overflow size_t), offsets, leading dimensions,
 * enum values, NULLs, sub-buffers, read-only buffers, buffers, queues and
 * events of another cl_context, arguments that alias each other, and wait
 * lists.  The oracle is written from include/binv/binv.h alone:
 *  - must-fail: a call that breaks a rule binv.h states (or that would make
 *    the device write outside the caller's buffers) returns non-success;
 *  - must-succeed: a call every argument of which is valid by binv.h (with
 *    moderate sizes) returns BINV_SUCCESS; calls in between may do either;
 *  - on error no byte of any buffer changes and *event stays NULL; on success
 *    no byte outside the call's documented outputs changes (every cl_mem the
 *    harness owns lives in one of a few root buffers whose bytes are read back
 *    after every call and compared with a host shadow; the caller-visible
 *    "buffers" are sub-buffers of one arena with guard gaps between them, so
 *    a write past a view's end lands in a guard and is seen);
 *  - every error on a non-NULL context has a non-empty
 *    binv_context_last_error message;
 *  - a must-succeed binv_kv_append_rope(_q) writes the bytes of binv_rope
 *    followed by binv_kv_append (replayed from the state before the call);
 *  - a successful binv_selected_log_softmax writes binv_log_softmax's
 *    element at each row's id (NaN for an id >= cols);
 *  - binv_swiglu_backward's dgate and dup may each be an input's own view,
 *    and binv_rope_backward has binv_rope's rules (binv.h).
 * A violation prints the call and aborts (a libFuzzer crash with the input).
 * One OpenCL context (PoCL's CPU device, or the first device found) is
 * created once per process; kernels are built once per process. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binv/binv.h"
#include "harness.h" /* hx_load / hx_store: the dtype conversions of the tests */

/* ---- oracle verdicts ----------------------------------------------------- */
enum { V_OK = 0, V_GRAY = 1, V_BAD = 2 };
typedef struct verdict {
    int v;
    char why[256];
} verdict;
static void bad(verdict *vd, const char *why) {
    if (vd->v < V_BAD) snprintf(vd->why, sizeof vd->why, "%s", why);
    vd->v = V_BAD;
}
static void gray(verdict *vd) {
    if (vd->v < V_GRAY) vd->v = V_GRAY;
}

/* ---- byte reader --------------------------------------------------------- */
typedef struct reader {
    const uint8_t *p;
    size_t n, i;
} reader;
static uint8_t u8(reader *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static uint32_t u32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)u8(r) << (8 * i);
    return v;
}
static uint64_t u64(reader *r) { return u32(r) | (uint64_t)u32(r) << 32; }

/* Sizes: mostly small (0..63), some medium, some hostile. */
static size_t rd_size(reader *r) {
    uint8_t b = u8(r);
    if (b < 0xC0) return b & 0x3F;
    if (b < 0xE0) return (size_t)(b & 0x1F) * 64 + u8(r);
    switch (b & 0x1F) {
    case 0: return 0;
    case 1: return SIZE_MAX;
    case 2: return SIZE_MAX / 2;
    case 3: return SIZE_MAX / 2 + 1;
    case 4: return (size_t)1 << 32;
    case 5: return ((size_t)1 << 32) - 1;
    case 6: return (size_t)1 << 31;
    case 7: return ((size_t)1 << 60) + 64; /* * 16 wraps to 1024 */
    case 8: return (size_t)1 << 62;
    case 9: return SIZE_MAX / 16 + 1;
    case 10: return SIZE_MAX / 4 + 1;
    case 11: return 0x0fffffff;
    case 12: return 0x10000000;
    case 13: return 0x7fffffff;
    case 14: return 0x80000000u;
    case 15: return (size_t)u64(r);
    case 16: return SIZE_MAX - u8(r);
    case 17: return (size_t)1 << 28;
    case 18: return 4097;
    case 19: return 65536;
    case 20: return (size_t)1 << 20;
    case 21: return ((size_t)1 << 63) + 1;
    case 22: return SIZE_MAX / 3 + 1;
    case 23: return 0xffffffffu / 3;
    default: return 1 + (b & 7);
    }
}
static float rd_float(reader *r, float nice) {
    uint8_t b = u8(r);
    if (b < 0xE0) return nice;
    switch (b & 0x1F) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return -1.0f;
    case 4: return 0.0f;
    case 5: return 1.0f;
    case 6: return 3.4028235e38f;
    case 7: return 1e-45f;
    case 8: return -0.0f;
    case 9: return 2.0f;
    case 10: {
        uint32_t u = u32(r);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: return nice * (float)(b & 7);
    }
}
static binv_dtype rd_dtype(reader *r) {
    uint8_t b = u8(r);
    if (b < 0xF0) return (binv_dtype)(b % 3 + 1);
    static const int bad_vals[] = {0, 4, -1, 0x7fffffff, 1000, 255, -2000, 5};
    return (binv_dtype)bad_vals[b & 7];
}
static binv_transpose rd_trans(reader *r) {
    uint8_t b = u8(r);
    if (b < 0xF0) return (binv_transpose)(b & 1);
    static const int bad_vals[] = {2, -1, 0x7fffffff, 3, 256, 1000, -2, 17};
    return (binv_transpose)bad_vals[b & 7];
}
static int dtype_ok(binv_dtype d) {
    return d == BINV_DTYPE_F32 || d == BINV_DTYPE_F16 || d == BINV_DTYPE_BF16;
}
static size_t esize(binv_dtype d) { return d == BINV_DTYPE_F32 ? 4 : 2; }

#define CHECK_CL(x)                                                                      \
    do {                                                                                 \
        cl_int e_ = (x);                                                                 \
        if (e_ != CL_SUCCESS) {                                                          \
            fprintf(stderr, "fuzz_api: %s failed: %d (line %d)\n", #x, (int)e_, __LINE__); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* ---- the world: roots, handles, queues, events --------------------------- */
/* Roots are the real allocations whose bytes are compared; handles are what
 * the API is given (a handle is a sub-buffer or all of a root). */
enum { R_ARENA, R_TOP, R_RO, R_OTHER, R_POS, NROOTS };
typedef struct root {
    cl_mem mem;
    cl_command_queue q; /* queue to read it with */
    size_t size;
    uint8_t *shadow, *now, *mask;
} root;

#define REGION 8192
#define GUARD 1024
#define NREG 7
#define ARENA (GUARD + NREG * (REGION + GUARD))

typedef struct handle {
    cl_mem mem;
    int root;      /* -1: NULL handle */
    size_t origin; /* bytes into the root */
    size_t size;
    int ro;        /* CL_MEM_READ_ONLY */
    int wo;        /* CL_MEM_WRITE_ONLY */
    int foreign;   /* of another cl_context */
} handle;

enum { NH = 17 };
static struct world {
    int ready;
    cl_platform_id platform;
    cl_device_id dev;
    cl_context cl, cl2;
    cl_command_queue q, q_ooo, q2, q_other;
    binv_context *ctx, *ctx_other;
    root roots[NROOTS];
    handle h[NH];
    cl_event ev_done, ev_user, ev_other;
    /* the current KV batch and a host copy of what defines it */
    binv_kv_batch *batch;
    int batch_foreign;
    size_t b_pages, b_seqs, b_max_pages, b_tokens;
    cl_uint b_q[8], b_ctx[8], b_pt[8 * 16];
    unsigned long long calls, must_fail, must_succeed;
    /* per op (index g_opi): calls, successes, must-fail, must-succeed */
    unsigned long long op_n[32][4];
    unsigned long long unfused_checks; /* fused calls replayed unfused and compared */
    cl_mem scratch;                    /* ARENA bytes, no root: the unfused replay's K copy */
    uint8_t *pre[NROOTS];              /* the roots before a fused call */
} W;

static size_t region_off(int i) { return GUARD + (size_t)i * (REGION + GUARD); }

static cl_mem sub(cl_mem parent, cl_mem_flags flags, size_t origin, size_t size) {
    cl_buffer_region reg = {origin, size};
    cl_int err;
    cl_mem m = clCreateSubBuffer(parent, flags, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
    CHECK_CL(err);
    return m;
}

static void set_handle(int i, cl_mem m, int rt, size_t origin, size_t size, int ro, int foreign) {
    W.h[i] = (handle){m, rt, origin, size, ro, 0, foreign};
}

static void world_init(void) {
    if (W.ready) return;
    cl_uint np = 0;
    cl_platform_id plats[8];
    CHECK_CL(clGetPlatformIDs(8, plats, &np));
    int found = 0;
    for (cl_uint i = 0; i < np && !found; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_CPU, 1, &W.dev, NULL) == CL_SUCCESS) {
            W.platform = plats[i];
            found = 1;
        }
    for (cl_uint i = 0; i < np && !found; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 1, &W.dev, NULL) == CL_SUCCESS) {
            W.platform = plats[i];
            found = 1;
        }
    if (!found) {
        fprintf(stderr, "fuzz_api: no OpenCL device\n");
        abort();
    }
    cl_int err;
    W.cl = clCreateContext(NULL, 1, &W.dev, NULL, NULL, &err);
    CHECK_CL(err);
    W.cl2 = clCreateContext(NULL, 1, &W.dev, NULL, NULL, &err);
    CHECK_CL(err);
    W.q = clCreateCommandQueue(W.cl, W.dev, 0, &err);
    CHECK_CL(err);
    W.q2 = clCreateCommandQueue(W.cl, W.dev, 0, &err);
    CHECK_CL(err);
    W.q_ooo = clCreateCommandQueue(W.cl, W.dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err != CL_SUCCESS) W.q_ooo = NULL;
    W.q_other = clCreateCommandQueue(W.cl2, W.dev, 0, &err);
    CHECK_CL(err);
    binv_options o = {sizeof o, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    if (binv_context_create(W.cl, W.dev, &o, &W.ctx) != BINV_SUCCESS ||
        binv_context_create(W.cl2, W.dev, &o, &W.ctx_other) != BINV_SUCCESS) {
        fprintf(stderr, "fuzz_api: binv_context_create failed\n");
        abort();
    }
    cl_uint align_bits = 0;
    CHECK_CL(clGetDeviceInfo(W.dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits,
                             NULL));
    size_t align = align_bits / 8 ? align_bits / 8 : 128;
    if (align > 1024) {
        fprintf(stderr, "fuzz_api: sub-buffer alignment %zu too large\n", align);
        abort();
    }
    const size_t sizes[NROOTS] = {ARENA, REGION, REGION, REGION, 0};
    for (int i = 0; i < R_POS; i++) {
        root *r = &W.roots[i];
        r->size = sizes[i];
        cl_context c = i == R_OTHER ? W.cl2 : W.cl;
        cl_mem_flags fl = i == R_RO ? CL_MEM_READ_ONLY : CL_MEM_READ_WRITE;
        r->mem = clCreateBuffer(c, fl, r->size, NULL, &err);
        CHECK_CL(err);
        r->q = i == R_OTHER ? W.q_other : W.q;
    }
    for (int i = 0; i < NROOTS; i++) {
        W.roots[i].shadow = malloc(ARENA);
        W.roots[i].now = malloc(ARENA);
        W.roots[i].mask = malloc(ARENA);
        W.pre[i] = malloc(ARENA);
    }
    W.scratch = clCreateBuffer(W.cl, CL_MEM_READ_WRITE, ARENA, NULL, &err);
    CHECK_CL(err);
    cl_mem A = W.roots[R_ARENA].mem;
    for (int i = 0; i < 6; i++)
        set_handle(i, sub(A, CL_MEM_READ_WRITE, region_off(i), REGION), R_ARENA, region_off(i),
                   REGION, 0, 0);
    set_handle(6, sub(A, CL_MEM_READ_ONLY, region_off(6), REGION), R_ARENA, region_off(6), REGION,
               1, 0);
    /* Sub-buffers over parts of regions 0 and 1 (aliasing by storage, not handle). */
    set_handle(7, sub(A, CL_MEM_READ_WRITE, region_off(0) + 2048, 4096), R_ARENA,
               region_off(0) + 2048, 4096, 0, 0);
    set_handle(8, sub(A, CL_MEM_READ_WRITE, region_off(1) + align, REGION - align), R_ARENA,
               region_off(1) + align, REGION - align, 0, 0);
    set_handle(9, A, R_ARENA, 0, ARENA, 0, 0);
    set_handle(10, W.roots[R_OTHER].mem, R_OTHER, 0, REGION, 0, 1);
    set_handle(11, NULL, R_POS, 0, 0, 1, 0); /* the batch's positions, when a batch exists */
    set_handle(12, NULL, -1, 0, 0, 0, 0);
    set_handle(13, W.roots[R_RO].mem, R_RO, 0, REGION, 1, 0);
    set_handle(14, W.roots[R_TOP].mem, R_TOP, 0, REGION, 0, 0);
    /* A sub-buffer spanning the end of region 2, the guard and region 3. */
    set_handle(15, sub(A, CL_MEM_READ_WRITE, region_off(2) + REGION / 2, REGION + GUARD), R_ARENA,
               region_off(2) + REGION / 2, REGION + GUARD, 0, 0);
    /* A write-only view of region 5 (an input there is BINV_ERROR_ACCESS_FLAGS). */
    set_handle(16, sub(A, CL_MEM_WRITE_ONLY, region_off(5), REGION), R_ARENA, region_off(5), REGION,
               0, 0);
    W.h[16].wo = 1;

    CHECK_CL(clEnqueueMarkerWithWaitList(W.q, 0, NULL, &W.ev_done));
    CHECK_CL(clWaitForEvents(1, &W.ev_done));
    W.ev_user = clCreateUserEvent(W.cl, &err);
    CHECK_CL(err);
    CHECK_CL(clSetUserEventStatus(W.ev_user, CL_COMPLETE));
    W.ev_other = clCreateUserEvent(W.cl2, &err);
    CHECK_CL(err);
    CHECK_CL(clSetUserEventStatus(W.ev_other, CL_COMPLETE));
    W.ready = 1;
}

/* ---- the shadow comparison ----------------------------------------------- */
static void root_read(int i, uint8_t *dst) {
    root *r = &W.roots[i];
    if (!r->mem || !r->size) return;
    CHECK_CL(clEnqueueReadBuffer(r->q, r->mem, CL_TRUE, 0, r->size, dst, 0, NULL, NULL));
}
static void finish_all(void) {
    CHECK_CL(clFinish(W.q));
    CHECK_CL(clFinish(W.q2));
    if (W.q_ooo) CHECK_CL(clFinish(W.q_ooo));
    CHECK_CL(clFinish(W.q_other));
}

/* Fills every root with pseudo-random bytes (seeded by the input). */
static void fill_roots(uint64_t seed) {
    for (int i = 0; i < NROOTS; i++) {
        root *r = &W.roots[i];
        if (i == R_RO || i == R_POS || !r->mem) continue; /* keep: written at creation only */
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
        for (size_t j = 0; j < r->size; j += 8) {
            s += 0x9E3779B97F4A7C15ull;
            uint64_t z = s;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            memcpy(r->shadow + j, &z, r->size - j < 8 ? r->size - j : 8);
        }
        CHECK_CL(clEnqueueWriteBuffer(r->q, r->mem, CL_TRUE, 0, r->size, r->shadow, 0, NULL,
                                      NULL));
    }
    root_read(R_RO, W.roots[R_RO].shadow);
    root_read(R_POS, W.roots[R_POS].shadow);
}

/* ---- views ---------------------------------------------------------------- */
/* A rows x width view of `es`-byte elements from element `off`, row stride ld
 * (elements), in handle h. */
typedef struct view {
    int h;
    size_t off, rows, width, ld, es;
} view;

/* Extent in bytes from the view's first element; 0 for an empty view.
 * Returns 0 on overflow (then *ok = 0). */
static int view_end(const view *v, size_t *end_bytes) {
    size_t e = 0;
    if (v->rows && v->width) {
        if (v->rows - 1 > 0 && v->ld > (SIZE_MAX - v->width) / (v->rows - 1)) return 0;
        e = (v->rows - 1) * v->ld + v->width;
    }
    if (v->off > SIZE_MAX - e) return 0;
    e += v->off;
    if (e > SIZE_MAX / v->es) return 0;
    *end_bytes = e * v->es;
    return 1;
}
static int view_empty(const view *v) { return v->rows == 0 || v->width == 0; }

/* How a call uses a view: read (an input), written (an output), both, or
 * written and read only in some cases (gray on a write-only buffer). */
enum { U_IN = 0, U_OUT = 1, U_INOUT = 3, U_OUT_MAYBE_READ = 5 };

/* Checks an argument view: NULL, foreign, past the end, access flags (an
 * output in CL_MEM_READ_ONLY storage or an input in CL_MEM_WRITE_ONLY is a
 * must-fail).  Returns 1 when the view is valid and inside its handle (then
 * its bytes can be marked). */
static int check_view(verdict *vd, const view *v, int use, const char *what) {
    const int out = use & 1, in = use == U_IN || (use & 2);
    const handle *h = &W.h[v->h];
    char msg[200];
    if (!h->mem) {
        if (view_empty(v)) gray(vd);
        else {
            snprintf(msg, sizeof msg, "%s is NULL", what);
            bad(vd, msg);
        }
        return 0;
    }
    if (h->foreign) {
        snprintf(msg, sizeof msg, "%s belongs to another cl_context", what);
        bad(vd, msg);
        return 0;
    }
    size_t end;
    /* A stride whose rows * ld overflows (even where the last row's start
     * does not): a library may reject the view as overflowing. */
    if (v->ld > SIZE_MAX / v->es / (v->rows > 1 ? v->rows : 1)) gray(vd);
    if (!view_end(v, &end)) {
        if (view_empty(v)) gray(vd);
        else {
            snprintf(msg, sizeof msg, "%s: extent overflows", what);
            bad(vd, msg);
        }
        return 0;
    }
    if (end > h->size) {
        if (view_empty(v)) gray(vd);
        else {
            snprintf(msg, sizeof msg, "%s: view ends at byte %zu of %zu", what, end, h->size);
            bad(vd, msg);
        }
        return 0;
    }
    if (out && h->ro && !view_empty(v)) {
        snprintf(msg, sizeof msg, "%s: output in a CL_MEM_READ_ONLY buffer", what);
        bad(vd, msg);
    }
    if (h->wo && !view_empty(v)) {
        if (in) {
            snprintf(msg, sizeof msg, "%s: input in a CL_MEM_WRITE_ONLY buffer", what);
            bad(vd, msg);
        } else if (use & 4) {
            gray(vd);
        }
    }
    return 1;
}

/* Marks (val) or tests the bytes of a valid view in its root's mask. */
static int view_mark(const view *v, uint8_t val, int test) {
    const handle *h = &W.h[v->h];
    if (view_empty(v) || h->root < 0) return 0;
    uint8_t *m = W.roots[h->root].mask;
    const size_t base = h->origin + v->off * v->es, w = v->width * v->es;
    /* ld == 0: every row is the same bytes (rows may be huge then). */
    const size_t nrows = v->ld == 0 ? 1 : v->rows;
    for (size_t r = 0; r < nrows; r++) {
        uint8_t *p = m + base + r * v->ld * v->es;
        if (test) {
            for (size_t j = 0; j < w; j++)
                if (p[j] & val) return 1;
        } else {
            for (size_t j = 0; j < w; j++) p[j] |= val;
        }
    }
    return 0;
}
static void masks_clear(void) {
    for (int i = 0; i < NROOTS; i++)
        if (W.roots[i].size) memset(W.roots[i].mask, 0, W.roots[i].size);
}
/* Do two valid views share a byte? (uses mask bit 0x80 as scratch) */
static int views_share(const view *a, const view *b) {
    if (view_empty(a) || view_empty(b)) return 0;
    if (W.h[a->h].root != W.h[b->h].root || W.h[a->h].root < 0) return 0;
    uint8_t *m = W.roots[W.h[a->h].root].mask;
    const size_t n = W.roots[W.h[a->h].root].size;
    for (size_t i = 0; i < n; i++) m[i] &= 0x7f;
    view_mark(a, 0x80, 0);
    int r = view_mark(b, 0x80, 1);
    for (size_t i = 0; i < n; i++) m[i] &= 0x7f;
    return r;
}
/* The same elements in the same storage with the same stride ("x itself"). */
static int views_identical(const view *a, const view *b) {
    const handle *ha = &W.h[a->h], *hb = &W.h[b->h];
    return ha->root == hb->root && ha->origin + a->off * a->es == hb->origin + b->off * b->es &&
           (a->ld == b->ld || a->rows == 1) && a->rows == b->rows && a->width == b->width &&
           a->es == b->es;
}

/* out may not overlap in: must-fail when they share a byte, unless
 * `in_place_ok` and the views are the same elements (then gray when the
 * handles differ, ok when it is the same handle). */
/* The byte ranges [first, last] of two valid views intersect (a library may
 * reject such interleaved views as overlapping without being wrong). */
static int views_span_overlap(const view *a, const view *b) {
    if (view_empty(a) || view_empty(b)) return 0;
    const handle *ha = &W.h[a->h], *hb = &W.h[b->h];
    if (ha->root != hb->root) return 0;
    size_t ea, eb;
    view_end(a, &ea);
    view_end(b, &eb);
    const size_t a0 = ha->origin + a->off * a->es, a1 = ha->origin + ea;
    const size_t b0 = hb->origin + b->off * b->es, b1 = hb->origin + eb;
    return a0 < b1 && b0 < a1;
}

static void no_overlap(verdict *vd, const view *out, int ok_out, const view *in, int ok_in,
                       int in_place_ok, const char *what) {
    if (!ok_out || !ok_in) return;
    if (!views_share(out, in)) {
        if (views_span_overlap(out, in)) gray(vd);
        return;
    }
    if (in_place_ok && views_identical(out, in)) {
        if (out->h != in->h || out->ld != in->ld) gray(vd);
        return;
    }
    bad(vd, what);
}

/* ---- queue, events -------------------------------------------------------- */
typedef struct call_env {
    binv_context *ctx;
    cl_command_queue q;
    cl_uint nev;
    const cl_event *wl;
    cl_event list[3];
    int want_event;
} call_env;

static void rd_env(reader *r, call_env *e, verdict *vd) {
    uint8_t b = u8(r);
    e->ctx = W.ctx;
    if (b == 0xFF) {
        e->ctx = NULL;
        bad(vd, "ctx is NULL");
    }
    b = u8(r);
    e->q = W.q;
    if (b >= 0xF8) {
        switch (b & 7) {
        case 0: e->q = NULL; bad(vd, "queue is NULL"); break;
        case 1: e->q = W.q_other; bad(vd, "queue of another cl_context"); break;
        case 2: if (W.q_ooo) e->q = W.q_ooo; break;
        default: e->q = W.q2; break;
        }
    }
    b = u8(r);
    e->nev = 0;
    e->wl = NULL;
    if (b >= 0xE0) {
        e->list[0] = W.ev_done;
        e->list[1] = W.ev_user;
        e->list[2] = W.ev_done;
        switch (b & 7) {
        case 0: e->nev = 1; e->wl = e->list; break;
        case 1: e->nev = 3; e->wl = e->list; break;
        case 2: e->nev = 1; e->wl = NULL; bad(vd, "num_events 1, wait_list NULL"); break;
        case 3: e->nev = 0; e->wl = e->list; bad(vd, "num_events 0, wait_list non-NULL"); break;
        case 4: e->nev = 2; e->list[1] = NULL; e->wl = e->list; bad(vd, "wait_list[1] NULL"); break;
        case 5: e->nev = 2; e->list[0] = W.ev_other; e->wl = e->list;
            bad(vd, "event of another cl_context"); break;
        default: e->nev = 2; e->wl = e->list; break;
        }
    }
    e->want_event = u8(r) & 1;
}

/* ---- the call and its checks ---------------------------------------------- */
static const char *g_op = "";
static int g_opi;
static char g_desc[1024];

static void violation(const char *what, binv_status st) {
    fprintf(stderr, "\nfuzz_api ORACLE VIOLATION in %s: %s (status %d %s)\n  call: %s\n", g_op,
            what, st, binv_status_string(st), g_desc);
    if (W.ctx) fprintf(stderr, "  last_error: %s\n", binv_context_last_error(W.ctx));
    abort();
}

/* After a call: status against the verdict, message, event, bytes. */
static void after_call(const verdict *vd, const call_env *e, binv_status st, cl_event ev) {
    W.calls++;
    if (vd->v == V_BAD) W.must_fail++;
    if (vd->v == V_OK) W.must_succeed++;
    W.op_n[g_opi][0]++;
    W.op_n[g_opi][1] += st == BINV_SUCCESS;
    W.op_n[g_opi][2] += vd->v == V_BAD;
    W.op_n[g_opi][3] += vd->v == V_OK;
    if (vd->v == V_BAD && st == BINV_SUCCESS) {
        char m[320];
        snprintf(m, sizeof m, "must fail (%s) but returned BINV_SUCCESS", vd->why);
        if (ev) clReleaseEvent(ev);
        finish_all();
        violation(m, st);
    }
    if (vd->v == V_OK && st != BINV_SUCCESS) violation("must succeed but failed", st);
    if (st != BINV_SUCCESS) {
        if (e->ctx) {
            const char *msg = binv_context_last_error(e->ctx);
            if (!msg || !msg[0]) violation("error without a binv_context_last_error message", st);
        }
        if (ev) violation("error but *event was set", st);
    } else if (e->want_event) {
        if (!ev) violation("success but no event returned", st);
    }
    if (ev) {
        CHECK_CL(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
    }
    finish_all();
    for (int i = 0; i < NROOTS; i++) {
        root *r = &W.roots[i];
        if (!r->mem || !r->size) continue;
        root_read(i, r->now);
        for (size_t j = 0; j < r->size; j++)
            if (r->now[j] != r->shadow[j] && !(st == BINV_SUCCESS && (r->mask[j] & 1))) {
                char m[200];
                snprintf(m, sizeof m, "byte %zu of root %d changed (0x%02x -> 0x%02x) %s", j, i,
                         r->shadow[j], r->now[j],
                         st == BINV_SUCCESS ? "outside the documented outputs" : "on error");
                violation(m, st);
            }
        memcpy(r->shadow, r->now, r->size);
    }
}

static int rd_handle(reader *r) { return u8(r) % NH; }

/* rows x cols ops --------------------------------------------------------- */
/* New entry points are appended (op byte % NOPS), so that the seeds of the
 * older ones keep their meaning. */
enum { OP_GEMM, OP_RMS, OP_ADDRMS, OP_LN, OP_SM, OP_LSM, OP_RSUM, OP_RMEAN, OP_SWIGLU,
       OP_BATCH, OP_BATCH_DESTROY, OP_ROPE, OP_APPEND, OP_ATTN, OP_CTX, OP_MISC,
       OP_APPEND_ROPE, OP_APPEND_ROPE_Q, OP_RMSBWD, OP_SEL_LSM, OP_SWIGLU_BWD, OP_ROPE_BWD,
       NOPS }; /* new ops go last: a seed's op byte keeps its meaning */
static const char *const OP_NAMES[NOPS] = {
    "binv_gemm", "binv_rmsnorm", "binv_add_rmsnorm", "binv_layernorm", "binv_softmax",
    "binv_log_softmax", "binv_row_sum", "binv_row_mean", "binv_swiglu", "binv_kv_batch_create",
    "binv_kv_batch_destroy", "binv_rope", "binv_kv_append", "binv_attention",
    "binv_context_create", "misc", "binv_kv_append_rope", "binv_kv_append_rope_q",
    "binv_rmsnorm_backward", "binv_selected_log_softmax", "binv_swiglu_backward",
    "binv_rope_backward"};

static void enum_dtype(verdict *vd, binv_dtype d) {
    if (!dtype_ok(d)) bad(vd, "dtype out of range");
}

static void do_gemm(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    binv_transpose ta = rd_trans(r), tb = rd_trans(r);
    size_t m = rd_size(r), n = rd_size(r), k = rd_size(r);
    float alpha = rd_float(r, 1.0f), beta = rd_float(r, 0.5f);
    int ha = rd_handle(r), hb = rd_handle(r), hc = rd_handle(r);
    size_t ao = rd_size(r), lda = rd_size(r), bo = rd_size(r), ldb = rd_size(r), co = rd_size(r),
           ldc = rd_size(r);
    enum_dtype(&vd, dt);
    if ((unsigned)ta > 1 || (unsigned)tb > 1) bad(&vd, "transpose out of range");
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    /* op(A) m x k: stored m x k (NO_TRANS) or k x m; op(B) k x n: k x n or n x k. */
    view va = {ha, ao, ta == BINV_TRANS ? k : m, ta == BINV_TRANS ? m : k, lda, es};
    view vb = {hb, bo, tb == BINV_TRANS ? n : k, tb == BINV_TRANS ? k : n, ldb, es};
    view vc = {hc, co, m, n, ldc, es};
    const int quick = m == 0 || n == 0;
    if (quick) {
        /* Nothing computed: A, B, C are not touched.  Objects of another
         * cl_context still are an error; NULLs, sizes and strides are either. */
        if (W.h[ha].foreign || W.h[hb].foreign || W.h[hc].foreign)
            bad(&vd, "buffer of another cl_context (quick return)");
        verdict q = {0};
        masks_clear();
        check_view(&q, &va, 0, "A");
        check_view(&q, &vb, 0, "B");
        check_view(&q, &vc, 1, "C");
        if (q.v != V_OK || lda < va.width || ldb < vb.width || ldc < n || !lda || !ldb || !ldc)
            gray(&vd);
        if (m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff) gray(&vd);
    } else {
        if (k == 0) {
            /* A and B are empty; C = beta * C. */
            if (!W.h[ha].mem || !W.h[hb].mem) gray(&vd);
            if (W.h[ha].foreign || W.h[hb].foreign) bad(&vd, "A/B of another cl_context");
            if (lda < va.width || ldb < vb.width || !lda || !ldb) gray(&vd); /* BLAS: ld >= 1 */
        } else {
            if (lda < va.width) bad(&vd, "lda < row length");
            if (ldb < vb.width) bad(&vd, "ldb < row length");
        }
        if (ldc < n) bad(&vd, "ldc < n");
        if (m > 4096 || n > 4096 || k > 4096) gray(&vd); /* only moderate sizes must succeed */
    }
    masks_clear();
    verdict vq = {0};
    verdict *vv = quick ? &vq : &vd; /* quick return: view problems were judged above */
    int oka = check_view(vv, &va, 0, "A"), okb = check_view(vv, &vb, 0, "B"),
        okc = check_view(vv, &vc, beta != 0.0f ? U_INOUT : U_OUT_MAYBE_READ, "C");
    no_overlap(vv, &vc, okc, &va, oka, 0, "C overlaps A");
    no_overlap(vv, &vc, okc, &vb, okb, 0, "C overlaps B");
    if (okc && !quick) view_mark(&vc, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "gemm dt=%d ta=%d tb=%d m=%zu n=%zu k=%zu alpha=%g beta=%g A=h%d+%zu ld%zu "
             "B=h%d+%zu ld%zu C=h%d+%zu ld%zu q=%p nev=%u ev=%d verdict=%d",
             (int)dt, (int)ta, (int)tb, m, n, k, alpha, beta, ha, ao, lda, hb, bo, ldb, hc, co, ldc,
             (void *)e.q, e.nev, e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_gemm(e.ctx, e.q, dt, ta, tb, m, n, k, alpha, W.h[ha].mem, ao, lda,
                               W.h[hb].mem, bo, ldb, beta, W.h[hc].mem, co, ldc, e.nev, e.wl,
                               e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

static void do_rows(reader *r, int op) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t rows = rd_size(r), cols = rd_size(r);
    int hx = rd_handle(r), hy = rd_handle(r), hr = rd_handle(r), hw = rd_handle(r),
        hb = rd_handle(r);
    size_t xo = rd_size(r), ldx = rd_size(r), yo = rd_size(r), ldy = rd_size(r),
           ro = rd_size(r), ldr = rd_size(r), wo = rd_size(r), bo = rd_size(r);
    float eps = rd_float(r, 1e-5f);
    /* Often in place (y = x) and often ld = cols, so that calls get through. */
    uint8_t shape = u8(r);
    if (shape & 1) ldx = cols;
    if (shape & 2) ldy = cols;
    if (shape & 4) ldr = cols;
    if ((shape & 0x18) == 0x18) { hy = hx; yo = xo; ldy = ldx; }
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    const int norm = op == OP_RMS || op == OP_ADDRMS || op == OP_LN;
    const int has_y = op != OP_RSUM && op != OP_RMEAN;
    if (norm && !(eps >= 0.0f && isfinite(eps))) bad(&vd, "eps not finite and >= 0");
    if (cols == 0 && rows) bad(&vd, "cols == 0");
    if (cols == 0 && !rows) gray(&vd);
    if (rows) {
        if (ldx < cols) bad(&vd, "ldx < cols");
        if (has_y && ldy < cols) bad(&vd, "ldy < cols");
        if (op == OP_ADDRMS && ldr < cols) bad(&vd, "ldr < cols");
    } else {
        if (ldx < cols || (has_y && ldy < cols) || (op == OP_ADDRMS && ldr < cols)) gray(&vd);
    }
    if (rows > 4096 || cols > 65536) gray(&vd);
    view vx = {hx, xo, rows, cols, ldx, es};
    view vy = {hy, yo, rows, cols, ldy, es};
    view vr = {hr, ro, rows, cols, ldr, es};
    view vw = {hw, wo, rows ? 1 : 0, cols, cols, es};
    view vbeta = {hb, bo, rows ? 1 : 0, cols, cols, es};
    if (!rows) {
        /* A no-op; whether weight/gamma/beta (cols elements, independent of
         * rows) are still checked is the library's choice. */
        verdict t = {0};
        view w1 = vw, b1 = vbeta;
        w1.rows = b1.rows = 1;
        if (op == OP_RMS || op == OP_ADDRMS || op == OP_LN) check_view(&t, &w1, U_IN, "weight");
        if (op == OP_LN) check_view(&t, &b1, U_IN, "beta");
        if (t.v != V_OK) gray(&vd);
    }
    view vo = {hy, yo, rows, 1, 1, 4}; /* row_sum/row_mean: out[out_offset + i], f32 */
    masks_clear();
    int okx = check_view(&vd, &vx, op == OP_ADDRMS ? U_INOUT : U_IN, "x");
    int oky = 0, okr = 0, okw = 0, okb = 0, oko = 0;
    if (has_y) oky = check_view(&vd, &vy, 1, "y");
    else oko = check_view(&vd, &vo, 1, "out");
    if (op == OP_ADDRMS) okr = check_view(&vd, &vr, 0, "residual");
    if (op == OP_RMS || op == OP_ADDRMS) okw = check_view(&vd, &vw, 0, "weight");
    if (op == OP_LN) {
        okw = check_view(&vd, &vw, 0, "gamma");
        okb = check_view(&vd, &vbeta, 0, "beta");
    }
    if (has_y) {
        no_overlap(&vd, &vy, oky, &vx, okx, op != OP_ADDRMS, "y overlaps x");
        if (okr) no_overlap(&vd, &vy, oky, &vr, okr, 0, "y overlaps residual");
        if (okw) no_overlap(&vd, &vy, oky, &vw, okw, 0, "y overlaps weight/gamma");
        if (okb) no_overlap(&vd, &vy, oky, &vbeta, okb, 0, "y overlaps beta");
        if (oky) view_mark(&vy, 1, 0);
    } else {
        no_overlap(&vd, &vo, oko, &vx, okx, 0, "out overlaps x");
        if (oko) view_mark(&vo, 1, 0);
    }
    if (op == OP_ADDRMS) {
        /* x is written too: it may not partly overlap residual or weight. */
        if (okx && okr && views_share(&vx, &vr)) {
            if (views_identical(&vx, &vr)) gray(&vd);
            else bad(&vd, "x (written) overlaps residual");
        }
        if (okx && okw && views_share(&vx, &vw)) bad(&vd, "x (written) overlaps weight");
        if ((okx && okr && views_span_overlap(&vx, &vr)) ||
            (okx && okw && views_span_overlap(&vx, &vw)))
            gray(&vd);
        if (okx) view_mark(&vx, 1, 0);
    }
    snprintf(g_desc, sizeof g_desc,
             "%s dt=%d rows=%zu cols=%zu x=h%d+%zu ld%zu y=h%d+%zu ld%zu r=h%d+%zu ld%zu "
             "w=h%d+%zu b=h%d+%zu eps=%g q=%p nev=%u ev=%d verdict=%d",
             OP_NAMES[op], (int)dt, rows, cols, hx, xo, ldx, hy, yo, ldy, hr, ro, ldr, hw, wo, hb,
             bo, eps, (void *)e.q, e.nev, e.want_event, vd.v);
    cl_event ev = NULL, *pev = e.want_event ? &ev : NULL;
    cl_mem x = W.h[hx].mem, y = W.h[hy].mem;
    binv_status st;
    switch (op) {
    case OP_RMS:
        st = binv_rmsnorm(e.ctx, e.q, dt, rows, cols, x, xo, ldx, W.h[hw].mem, wo, eps, y, yo, ldy,
                          e.nev, e.wl, pev);
        break;
    case OP_ADDRMS:
        st = binv_add_rmsnorm(e.ctx, e.q, dt, rows, cols, x, xo, ldx, W.h[hr].mem, ro, ldr,
                              W.h[hw].mem, wo, eps, y, yo, ldy, e.nev, e.wl, pev);
        break;
    case OP_LN:
        st = binv_layernorm(e.ctx, e.q, dt, rows, cols, x, xo, ldx, W.h[hw].mem, wo, W.h[hb].mem,
                            bo, eps, y, yo, ldy, e.nev, e.wl, pev);
        break;
    case OP_SM:
        st = binv_softmax(e.ctx, e.q, dt, rows, cols, x, xo, ldx, y, yo, ldy, e.nev, e.wl, pev);
        break;
    case OP_LSM:
        st = binv_log_softmax(e.ctx, e.q, dt, rows, cols, x, xo, ldx, y, yo, ldy, e.nev, e.wl,
                              pev);
        break;
    case OP_RSUM:
        st = binv_row_sum(e.ctx, e.q, dt, rows, cols, x, xo, ldx, y, yo, e.nev, e.wl, pev);
        break;
    default:
        st = binv_row_mean(e.ctx, e.q, dt, rows, cols, x, xo, ldx, y, yo, e.nev, e.wl, pev);
        break;
    }
    after_call(&vd, &e, st, ev);
}

static void do_rmsbwd(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t rows = rd_size(r), cols = rd_size(r);
    int hx = rd_handle(r), hw = rd_handle(r), hdy = rd_handle(r), hdx = rd_handle(r),
        hdw = rd_handle(r);
    size_t xo = rd_size(r), ldx = rd_size(r), wo = rd_size(r), dyo = rd_size(r),
           lddy = rd_size(r), dxo = rd_size(r), lddx = rd_size(r), dwo = rd_size(r);
    float eps = rd_float(r, 1e-5f);
    /* Often ld = cols and often dx over x or dy (in place). */
    uint8_t shape = u8(r);
    const int acc = shape >> 7;
    if (shape & 1) ldx = cols;
    if (shape & 2) lddy = cols;
    if (shape & 4) lddx = cols;
    if ((shape & 0x18) == 0x08) { hdx = hx; dxo = xo; lddx = ldx; }
    if ((shape & 0x18) == 0x10) { hdx = hdy; dxo = dyo; lddx = lddy; }
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    if (!(eps >= 0.0f && isfinite(eps))) bad(&vd, "eps not finite and >= 0");
    if (cols == 0 && rows) bad(&vd, "cols == 0");
    if (cols == 0 && !rows) gray(&vd);
    if (rows) {
        if (ldx < cols || lddy < cols || lddx < cols) bad(&vd, "ld < cols");
    } else if (ldx < cols || lddy < cols || lddx < cols) {
        gray(&vd);
    }
    if (rows > 4096 || cols > 65536) gray(&vd);
    view vx = {hx, xo, rows, cols, ldx, es}, vdy = {hdy, dyo, rows, cols, lddy, es};
    view vdx = {hdx, dxo, rows, cols, lddx, es}, vw = {hw, wo, rows ? 1 : 0, cols, cols, es};
    /* dweight (cols floats) is written unless rows == 0 and accumulating. */
    const int dw_written = cols && (rows || !acc);
    view vdw = {hdw, dwo, dw_written ? 1 : 0, cols, cols, 4};
    if (!rows) {
        /* Whether the weight and an untouched dweight are still checked is
         * the library's choice. */
        verdict t = {0};
        view w1 = vw, d1 = vdw;
        w1.rows = d1.rows = 1;
        check_view(&t, &w1, U_IN, "weight");
        check_view(&t, &d1, acc ? U_INOUT : U_OUT, "dweight");
        if (t.v != V_OK) gray(&vd);
    }
    masks_clear();
    int okx = check_view(&vd, &vx, U_IN, "x"), okdy = check_view(&vd, &vdy, U_IN, "dy");
    int okw = check_view(&vd, &vw, U_IN, "weight"), okdx = check_view(&vd, &vdx, U_OUT, "dx");
    int okdw = check_view(&vd, &vdw, acc ? U_INOUT : U_OUT, "dweight");
    no_overlap(&vd, &vdx, okdx, &vx, okx, 1, "dx overlaps x");
    no_overlap(&vd, &vdx, okdx, &vdy, okdy, 1, "dx overlaps dy");
    no_overlap(&vd, &vdx, okdx, &vw, okw, 0, "dx overlaps weight");
    no_overlap(&vd, &vdw, okdw, &vx, okx, 0, "dweight overlaps x");
    no_overlap(&vd, &vdw, okdw, &vdy, okdy, 0, "dweight overlaps dy");
    no_overlap(&vd, &vdw, okdw, &vw, okw, 0, "dweight overlaps weight");
    no_overlap(&vd, &vdw, okdw, &vdx, okdx, 0, "dweight overlaps dx");
    if (okdx) view_mark(&vdx, 1, 0);
    if (okdw) view_mark(&vdw, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "rmsnorm_backward dt=%d rows=%zu cols=%zu x=h%d+%zu ld%zu w=h%d+%zu dy=h%d+%zu ld%zu "
             "dx=h%d+%zu ld%zu dw=h%d+%zu acc=%d eps=%g q=%p nev=%u ev=%d verdict=%d",
             (int)dt, rows, cols, hx, xo, ldx, hw, wo, hdy, dyo, lddy, hdx, dxo, lddx, hdw, dwo,
             acc, eps, (void *)e.q, e.nev, e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_rmsnorm_backward(e.ctx, e.q, dt, rows, cols, W.h[hx].mem, xo, ldx,
                                           W.h[hw].mem, wo, eps, W.h[hdy].mem, dyo, lddy,
                                           W.h[hdx].mem, dxo, lddx, W.h[hdw].mem, dwo, acc, e.nev,
                                           e.wl, e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

/* binv_selected_log_softmax ------------------------------------------------- */
/* out[out_offset + i] (f32) = log_softmax(row i of x)[ids[ids_offset + i]];
 * ids is cl_uint, out may share no byte with x or ids, ids may overlap x.
 * Inputs drawn like do_rows's, plus `shape`:
 *   bit 0: ldx = cols;
 *   bit 1: the harness writes ids first (mode bits 5-6: 0 random columns,
 *          1 the first row column 0 and the last cols - 1, 2 one row's id
 *          cols, 3 one row's id 0xffffffff or 0x80000000; the columns from
 *          the byte after shape);
 *   bits 2-4, placement: 1 ids at x's first byte (allowed), 2 ids right
 *          after x, 3 out right after x, 4 out over x's last element (must
 *          fail), 5 out right after ids, 6 out = ids (must fail), 7 out's
 *          last element over ids' first (must fail);
 *   bit 7: the harness writes x first, values in [-8, 8) (random bits make
 *          degenerate rows: one element dominates, the log-sum is 0). */
static size_t g_sel_checks; /* successful calls compared with log_softmax + gather */

/* binv.h: for F32 out equals the gathered log_softmax element bit for bit
 * (NaN payloads included); for F16/BF16 out rounded to the dtype equals it
 * (a NaN matches a NaN whatever the payloads, as in tests/test_selected.c);
 * an id >= cols gives NaN.  x and ids are as the call saw them (out overlaps
 * neither); log_softmax writes W.scratch, which is no root. */
static void check_selected(binv_dtype dt, size_t rows, size_t cols, int hx, size_t xo,
                           size_t ldx, int hi, size_t io, int ho, size_t oo) {
    static uint8_t y[ARENA];
    const size_t es = esize(dt);
    binv_status st = binv_log_softmax(W.ctx, W.q, dt, rows, cols, W.h[hx].mem, xo, ldx,
                                      W.scratch, 0, cols, 0, NULL, NULL);
    if (st != BINV_SUCCESS) violation("binv_log_softmax of the same x failed", st);
    CHECK_CL(clEnqueueReadBuffer(W.q, W.scratch, CL_TRUE, 0, rows * cols * es, y, 0, NULL, NULL));
    const uint8_t *ids = W.roots[W.h[hi].root].shadow + W.h[hi].origin + io * 4;
    const uint8_t *out = W.roots[W.h[ho].root].shadow + W.h[ho].origin + oo * 4;
    for (size_t i = 0; i < rows; i++) {
        cl_uint id;
        float got;
        memcpy(&id, ids + 4 * i, 4);
        memcpy(&got, out + 4 * i, 4);
        char m[200];
        if (id >= cols) {
            if (isnan(got)) continue;
            snprintf(m, sizeof m, "row %zu: id %u >= cols but out is %a, not NaN", i, id, got);
            violation(m, BINV_SUCCESS);
        }
        const uint8_t *want = y + (i * cols + id) * es;
        uint8_t r[4];
        hx_store(dt, r, 0, got);
        const int same = dt == BINV_DTYPE_F32 ? !memcmp(r, want, 4)
                         : isnan(got) ? isnan(hx_load(dt, want, 0))
                                      : !memcmp(r, want, es);
        if (!same) {
            snprintf(m, sizeof m, "row %zu id %u: out %a, log_softmax element %a", i, id, got,
                     hx_load(dt, want, 0));
            violation(m, BINV_SUCCESS);
        }
    }
    g_sel_checks++;
}

static void do_selected(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t rows = rd_size(r), cols = rd_size(r);
    int hx = rd_handle(r), hi = rd_handle(r), ho = rd_handle(r);
    size_t xo = rd_size(r), ldx = rd_size(r), io = rd_size(r), oo = rd_size(r);
    const uint8_t shape = u8(r), idb = u8(r);
    if (shape & 1) ldx = cols;
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    view vx = {hx, xo, rows, cols, ldx, es};
    /* Placements next to or over x (in f32 / cl_uint elements of x's handle). */
    size_t xend = 0;
    const int place = shape >> 2 & 7;
    if (place >= 1 && place <= 4 && !view_empty(&vx) && view_end(&vx, &xend) &&
        xend < ((size_t)1 << 40)) {
        if (place == 1) { hi = hx; io = xo * es / 4; }
        if (place == 2) { hi = hx; io = (xend + 3) / 4; }
        if (place == 3) { ho = hx; oo = (xend + 3) / 4; }
        if (place == 4) { ho = hx; oo = (xend - 1) / 4; }
    }
    if (place == 5 && io < ((size_t)1 << 40) && rows < ((size_t)1 << 40)) { ho = hi; oo = io + rows; }
    if (place == 6) { ho = hi; oo = io; }
    if (place == 7 && rows && io + 1 >= rows && io < ((size_t)1 << 40)) { ho = hi; oo = io + 1 - rows; }
    if (cols == 0 && rows) bad(&vd, "cols == 0");
    if (cols == 0 && !rows) gray(&vd);
    if (rows && ldx < cols) bad(&vd, "ldx < cols");
    if (!rows && ldx < cols) gray(&vd);
    if (rows > 4096 || cols > 65536) gray(&vd);
    view vi = {hi, io, rows, 1, 1, 4}, vo = {ho, oo, rows, 1, 1, 4};
    masks_clear();
    int okx = check_view(&vd, &vx, U_IN, "x"), oki = check_view(&vd, &vi, U_IN, "ids"),
        oko = check_view(&vd, &vo, U_OUT, "out");
    no_overlap(&vd, &vo, oko, &vx, okx, 0, "out overlaps x");
    no_overlap(&vd, &vo, oko, &vi, oki, 0, "out overlaps ids");
    if (oko) view_mark(&vo, 1, 0);
    /* What the harness writes first, in arena or stand-alone storage only
     * (the read-only root and the batch's metadata keep their bytes): x, then
     * ids (ids win where they overlap x, as in a caller's buffer). */
    uint64_t s = idb * 0x9E3779B97F4A7C15ull + rows;
    const int xroot = W.h[hx].root, iroot = W.h[hi].root;
    if ((shape & 0x80) && okx && dtype_ok(dt) && rows && cols && rows <= ARENA / cols &&
        (xroot == R_ARENA || xroot == R_TOP)) {
        root *rt = &W.roots[xroot];
        const size_t at = W.h[hx].origin + xo * es, end = at + ((rows - 1) * ldx + cols) * es;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                hx_store(dt, rt->shadow + at, i * ldx + j, (float)((s >> 40) % 2048) / 128 - 8);
            }
        CHECK_CL(clEnqueueWriteBuffer(rt->q, rt->mem, CL_TRUE, at, end - at, rt->shadow + at, 0,
                                      NULL, NULL));
    }
    if ((shape & 2) && oki && rows && rows <= 4096 && cols &&
        (iroot == R_ARENA || iroot == R_TOP)) {
        root *rt = &W.roots[iroot];
        const size_t at = W.h[hi].origin + io * 4;
        for (size_t i = 0; i < rows; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            cl_uint id = (cl_uint)((s >> 33) % cols);
            const int mode = shape >> 5 & 3, pick = idb % rows == i;
            if (mode == 1 && i == 0) id = 0;
            if (mode == 1 && i == rows - 1) id = (cl_uint)(cols - 1);
            if (mode == 2 && pick) id = (cl_uint)cols;
            if (mode == 3 && pick) id = (idb & 1) ? 0xffffffffu : 0x80000000u;
            memcpy(rt->shadow + at + 4 * i, &id, 4);
        }
        CHECK_CL(clEnqueueWriteBuffer(rt->q, rt->mem, CL_TRUE, at, rows * 4, rt->shadow + at, 0,
                                      NULL, NULL));
    }
    snprintf(g_desc, sizeof g_desc,
             "selected_log_softmax dt=%d rows=%zu cols=%zu x=h%d+%zu ld%zu ids=h%d+%zu "
             "out=h%d+%zu shape=0x%02x q=%p nev=%u ev=%d verdict=%d",
             (int)dt, rows, cols, hx, xo, ldx, hi, io, ho, oo, shape, (void *)e.q, e.nev,
             e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_selected_log_softmax(e.ctx, e.q, dt, rows, cols, W.h[hx].mem, xo, ldx,
                                               W.h[hi].mem, io, W.h[ho].mem, oo, e.nev, e.wl,
                                               e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
    if (st == BINV_SUCCESS && rows && dtype_ok(dt) && cols <= ARENA / es / rows &&
        W.h[hi].root >= 0 && W.h[ho].root >= 0)
        check_selected(dt, rows, cols, hx, xo, ldx, hi, io, ho, oo);
}

static void do_swiglu(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t rows = rd_size(r), cols = rd_size(r);
    int hg = rd_handle(r), hu = rd_handle(r), hy = rd_handle(r);
    size_t go = rd_size(r), ldg = rd_size(r), uo = rd_size(r), ldu = rd_size(r), yo = rd_size(r),
           ldy = rd_size(r);
    uint8_t shape = u8(r);
    if (shape & 1) ldg = cols;
    if (shape & 2) ldu = cols;
    if (shape & 4) ldy = cols;
    if ((shape & 0x18) == 0x08) { hy = hg; yo = go; ldy = ldg; }
    if ((shape & 0x18) == 0x10) { hy = hu; yo = uo; ldy = ldu; }
    if (shape & 0x20) { hu = hg; uo = go + cols; ldu = ldg = 2 * cols; } /* [gate | up] rows */
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    if (rows && cols && (ldg < cols || ldu < cols || ldy < cols)) bad(&vd, "ld < cols");
    if (!rows || !cols) gray(&vd); /* binv.h does not say what an empty swiglu is */
    if (rows > 4096 || cols > 65536) gray(&vd);
    view vg = {hg, go, rows, cols, ldg, es}, vu = {hu, uo, rows, cols, ldu, es},
         vy = {hy, yo, rows, cols, ldy, es};
    masks_clear();
    int okg = check_view(&vd, &vg, 0, "gate"), oku = check_view(&vd, &vu, 0, "up"),
        oky = check_view(&vd, &vy, 1, "y");
    no_overlap(&vd, &vy, oky, &vg, okg, 1, "y overlaps gate");
    no_overlap(&vd, &vy, oky, &vu, oku, 1, "y overlaps up");
    if (oky) view_mark(&vy, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "swiglu dt=%d rows=%zu cols=%zu g=h%d+%zu ld%zu u=h%d+%zu ld%zu y=h%d+%zu ld%zu q=%p "
             "nev=%u ev=%d verdict=%d",
             (int)dt, rows, cols, hg, go, ldg, hu, uo, ldu, hy, yo, ldy, (void *)e.q, e.nev,
             e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_swiglu(e.ctx, e.q, dt, rows, cols, W.h[hg].mem, go, ldg, W.h[hu].mem,
                                 uo, ldu, W.h[hy].mem, yo, ldy, e.nev, e.wl,
                                 e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

/* binv.h: dgate and dup may each be gate, up or dy itself (the same view: in
 * place); any other overlap with an input, and any between dgate and dup, is
 * BINV_ERROR_ALIASING.  Inputs may overlap each other. */
static void do_swiglu_bwd(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t rows = rd_size(r), cols = rd_size(r);
    int hg = rd_handle(r), hu = rd_handle(r), hdy = rd_handle(r), hdg = rd_handle(r),
        hdu = rd_handle(r);
    size_t go = rd_size(r), ldg = rd_size(r), uo = rd_size(r), ldu = rd_size(r),
           dyo = rd_size(r), lddy = rd_size(r), dgo = rd_size(r), lddg = rd_size(r),
           duo = rd_size(r), lddu = rd_size(r);
    /* Often ld = cols, dgate over gate or dy, dup over up or dy (in place),
     * [gate | up] rows or [dgate | dup] rows of one matrix. */
    uint8_t shape = u8(r);
    if (shape & 1) ldg = ldu = cols;
    if (shape & 2) lddy = cols;
    if (shape & 4) lddg = lddu = cols;
    if (shape & 0x80) { hu = hg; uo = go + cols; ldu = ldg = 2 * cols; }
    if (shape & 0x08) { hdg = hg; dgo = go; lddg = ldg; }
    if (shape & 0x10) { hdu = hu; duo = uo; lddu = ldu; }
    if ((shape & 0x60) == 0x20) { hdg = hdy; dgo = dyo; lddg = lddy; }
    if ((shape & 0x60) == 0x40) { hdu = hdy; duo = dyo; lddu = lddy; }
    if ((shape & 0x60) == 0x60) { hdu = hdg; duo = dgo + cols; lddu = lddg = 2 * cols; }
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    if (rows && cols && (ldg < cols || ldu < cols || lddy < cols || lddg < cols || lddu < cols))
        bad(&vd, "ld < cols");
    if (!rows || !cols) gray(&vd); /* as binv_swiglu: binv.h does not say */
    if (rows > 4096 || cols > 65536) gray(&vd);
    view vg = {hg, go, rows, cols, ldg, es}, vu = {hu, uo, rows, cols, ldu, es},
         vdy = {hdy, dyo, rows, cols, lddy, es}, vdg = {hdg, dgo, rows, cols, lddg, es},
         vdu = {hdu, duo, rows, cols, lddu, es};
    masks_clear();
    int okg = check_view(&vd, &vg, U_IN, "gate"), oku = check_view(&vd, &vu, U_IN, "up"),
        okdy = check_view(&vd, &vdy, U_IN, "dy"), okdg = check_view(&vd, &vdg, U_OUT, "dgate"),
        okdu = check_view(&vd, &vdu, U_OUT, "dup");
    no_overlap(&vd, &vdg, okdg, &vg, okg, 1, "dgate overlaps gate");
    no_overlap(&vd, &vdg, okdg, &vu, oku, 1, "dgate overlaps up");
    no_overlap(&vd, &vdg, okdg, &vdy, okdy, 1, "dgate overlaps dy");
    no_overlap(&vd, &vdu, okdu, &vg, okg, 1, "dup overlaps gate");
    no_overlap(&vd, &vdu, okdu, &vu, oku, 1, "dup overlaps up");
    no_overlap(&vd, &vdu, okdu, &vdy, okdy, 1, "dup overlaps dy");
    no_overlap(&vd, &vdu, okdu, &vdg, okdg, 0, "dup overlaps dgate");
    if (okdg) view_mark(&vdg, 1, 0);
    if (okdu) view_mark(&vdu, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "swiglu_backward dt=%d rows=%zu cols=%zu g=h%d+%zu ld%zu u=h%d+%zu ld%zu "
             "dy=h%d+%zu ld%zu dg=h%d+%zu ld%zu du=h%d+%zu ld%zu q=%p nev=%u ev=%d verdict=%d",
             (int)dt, rows, cols, hg, go, ldg, hu, uo, ldu, hdy, dyo, lddy, hdg, dgo, lddg, hdu,
             duo, lddu, (void *)e.q, e.nev, e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_swiglu_backward(e.ctx, e.q, dt, rows, cols, W.h[hg].mem, go, ldg,
                                          W.h[hu].mem, uo, ldu, W.h[hdy].mem, dyo, lddy,
                                          W.h[hdg].mem, dgo, lddg, W.h[hdu].mem, duo, lddu, e.nev,
                                          e.wl, e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

/* ---- KV batch --------------------------------------------------------------- */
static void drop_batch(void) {
    binv_kv_batch_destroy(W.batch);
    W.batch = NULL;
    W.h[11].mem = NULL;
    W.h[11].size = 0;
    W.roots[R_POS].mem = NULL;
    W.roots[R_POS].size = 0;
}

static void do_batch(reader *r) {
    verdict vd = {0};
    call_env e = {0};
    uint8_t b = u8(r);
    e.ctx = b == 0xFF ? NULL : W.ctx;
    e.q = W.q;
    int foreign = (b & 0xF0) == 0xE0; /* a batch of a binv_context on another cl_context */
    if (foreign) { e.ctx = W.ctx_other; e.q = W.q_other; }
    if (!e.ctx) bad(&vd, "ctx is NULL");
    b = u8(r);
    if (b >= 0xF8) {
        e.q = (b & 1) ? NULL : (foreign ? W.q : W.q_other);
        bad(&vd, e.q ? "queue of another cl_context" : "queue is NULL");
    }
    size_t num_pages = rd_size(r), max_pages = u8(r), num_seqs = u8(r);
    max_pages = max_pages >= 0xF0 ? rd_size(r) : max_pages % 17;
    num_seqs = num_seqs >= 0xF0 ? rd_size(r) : num_seqs % 5;
    /* The host arrays hold num_seqs sequences of max_pages pages (row stride
     * max_pages, as binv.h defines page_table).  Sizes whose arrays the
     * harness cannot supply are only passed with num_seqs == 0 (then no
     * array is read). */
    cl_uint ql[8] = {0}, cl[8] = {0}, pt[128] = {0};
    const int arrays_fit = num_seqs <= 8 && (num_seqs == 0 || max_pages <= 128 / num_seqs);
    if (!arrays_fit) {
        if (u8(r) & 1) return;
        num_seqs = 0;
    }
    const size_t ns = num_seqs;
    for (size_t s = 0; s < ns; s++) {
        uint8_t a = u8(r), c = u8(r);
        ql[s] = a < 0xF0 ? a % 20 : u32(r);
        cl[s] = c < 0xF0 ? ql[s] + c % 40 : u32(r);
        for (size_t i = 0; i < max_pages; i++) {
            uint8_t p = u8(r);
            pt[s * max_pages + i] =
                p < 0xF8 ? p % 8 : (p == 0xFF ? 0xffffffffu : (cl_uint)num_pages + (p & 3));
        }
    }
    uint8_t nulls = u8(r);
    const cl_uint *aq = ql, *ac = cl, *ap = pt;
    binv_kv_batch *nb = NULL, **out = &nb;
    if (nulls >= 0xF0) {
        switch (nulls & 3) {
        case 0: aq = NULL; break;
        case 1: ac = NULL; break;
        case 2: ap = NULL; break;
        default: out = NULL; bad(&vd, "out is NULL"); break;
        }
        if (num_seqs && (!aq || !ac || !ap)) bad(&vd, "array NULL");
        if (!num_seqs) gray(&vd);
    }
    if (num_pages == 0 || max_pages == 0) gray(&vd);
    if (num_seqs == 0) gray(&vd);
    if (num_pages > 4096 || max_pages > 4096) gray(&vd);
    int dup = 0;
    {
        static uint8_t seen[4096 * 16];
        if (num_pages <= 4096) memset(seen, 0, num_pages * 16);
        for (size_t s = 0; s < ns && aq && ac && ap; s++) {
            if (ql[s] == 0) bad(&vd, "q_len 0");
            if (cl[s] < ql[s]) bad(&vd, "ctx_len < q_len");
            if ((size_t)cl[s] > max_pages * BINV_KV_PAGE_SIZE) bad(&vd, "ctx_len past page table");
            if (vd.v == V_BAD) continue;
            size_t used = ((size_t)cl[s] + 15) / 16;
            for (size_t i = 0; i < used; i++)
                if (pt[s * max_pages + i] >= num_pages) bad(&vd, "page index >= num_pages");
            if (vd.v == V_BAD || num_pages > 4096) continue;
            for (cl_uint p = cl[s] - ql[s]; p < cl[s]; p++) {
                size_t slot = (size_t)pt[s * max_pages + p / 16] * 16 + p % 16;
                if (seen[slot]) dup = 1;
                seen[slot] = 1;
            }
        }
    }
    if (dup) gray(&vd);
    snprintf(g_desc, sizeof g_desc,
             "kv_batch_create pages=%zu seqs=%zu max_pages=%zu q0=%u c0=%u pt0=%u foreign=%d "
             "nulls=%u verdict=%d",
             num_pages, num_seqs, max_pages, ql[0], cl[0], pt[0], foreign, nulls, vd.v);
    masks_clear();
    binv_status st =
        binv_kv_batch_create(e.ctx, e.q, num_pages, num_seqs, aq, ac, ap, max_pages, out);
    if (st != BINV_SUCCESS && nb) violation("error but *out is a batch", st);
    after_call(&vd, &e, st, NULL);
    if (st == BINV_SUCCESS && nb) {
        drop_batch();
        W.batch = nb;
        W.batch_foreign = foreign;
        W.b_pages = num_pages;
        W.b_seqs = ns;
        W.b_max_pages = max_pages;
        size_t t = 0;
        for (size_t s = 0; s < ns; s++) t += ql[s];
        W.b_tokens = t;
        if (binv_kv_batch_tokens(nb) != t) violation("binv_kv_batch_tokens is wrong", st);
        memcpy(W.b_q, ql, sizeof ql);
        memcpy(W.b_ctx, cl, sizeof cl);
        memcpy(W.b_pt, pt, sizeof pt);
        cl_mem pos = binv_kv_batch_positions(nb);
        if (!pos) violation("binv_kv_batch_positions is NULL", st);
        size_t sz = 0;
        CHECK_CL(clGetMemObjectInfo(pos, CL_MEM_SIZE, sizeof sz, &sz, NULL));
        if (sz < t * 4) violation("positions buffer smaller than the tokens", st);
        if (!foreign && sz <= ARENA) {
            W.h[11] = (handle){pos, R_POS, 0, sz, 1, 0, 0};
            W.roots[R_POS].mem = pos;
            W.roots[R_POS].size = sz;
            W.roots[R_POS].q = W.q;
            root_read(R_POS, W.roots[R_POS].shadow);
            /* positions are ctx_len - q_len + i */
            const cl_uint *pv = (const cl_uint *)W.roots[R_POS].shadow;
            size_t tt = 0;
            for (size_t s = 0; s < ns; s++)
                for (cl_uint i = 0; i < ql[s]; i++, tt++)
                    if (pv[tt] != cl[s] - ql[s] + i) violation("positions buffer content", st);
        } else {
            W.h[11] = (handle){pos, R_POS, 0, sz, 1, 0, 1};
        }
    }
}

/* ---- rope, append, attention ------------------------------------------------ */
/* binv_rope_backward: binv_rope's arguments and errors exactly (binv.h). */
static void do_rope(reader *r, int op) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    binv_dtype dt = rd_dtype(r);
    size_t tokens = rd_size(r), heads = rd_size(r), hd = rd_size(r);
    int hx = rd_handle(r), hp = rd_handle(r);
    size_t xo = rd_size(r), ldx = rd_size(r), po = rd_size(r);
    float theta = rd_float(r, 10000.0f);
    uint8_t shape = u8(r);
    if (shape & 1) hd = 2 * (hd % 64 + 1);
    if (shape & 2) ldx = heads * hd;
    if ((shape & 4) && W.batch && !W.batch_foreign) { hp = 11; po = 0; tokens = W.b_tokens; }
    enum_dtype(&vd, dt);
    const size_t es = dtype_ok(dt) ? esize(dt) : 4;
    if (hd < 2 || hd % 2) bad(&vd, "head_dim odd or < 2");
    if (!(theta > 1.0f) || !isfinite(theta)) bad(&vd, "theta not finite > 1");
    if (heads == 0) gray(&vd);
    size_t width = 0;
    int wok = !(heads && hd > SIZE_MAX / heads);
    if (wok) width = heads * hd;
    else bad(&vd, "heads * head_dim overflows");
    if (tokens && wok && ldx < width) bad(&vd, "ldx < heads*head_dim");
    if (!tokens) gray(&vd);
    if (tokens > 4096 || heads > 4096 || hd > 4096) gray(&vd);
    view vx = {hx, xo, tokens, width, ldx, es};
    view vp = {hp, po, tokens ? 1 : 0, tokens, tokens, 4};
    masks_clear();
    int okx = wok ? check_view(&vd, &vx, U_INOUT, "x") : 0, okp = check_view(&vd, &vp, 0, "positions");
    no_overlap(&vd, &vx, okx, &vp, okp, 0, "x overlaps positions");
    if (okx && vd.v != V_BAD) view_mark(&vx, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "%s dt=%d tokens=%zu heads=%zu hd=%zu x=h%d+%zu ld%zu pos=h%d+%zu theta=%g q=%p "
             "nev=%u ev=%d verdict=%d",
             OP_NAMES[op], (int)dt, tokens, heads, hd, hx, xo, ldx, hp, po, theta, (void *)e.q, e.nev,
             e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status (*fn)(binv_context *, cl_command_queue, binv_dtype, size_t, size_t, size_t,
                      cl_mem, size_t, size_t, cl_mem, size_t, float, cl_uint, const cl_event *,
                      cl_event *) = op == OP_ROPE_BWD ? binv_rope_backward : binv_rope;
    binv_status st = fn(e.ctx, e.q, dt, tokens, heads, hd, W.h[hx].mem, xo, ldx, W.h[hp].mem, po,
                        theta, e.nev, e.wl, e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

static int binv_mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

typedef struct cache_arg {
    binv_kv_cache c;
    int hk, hv;
    int ok_k, ok_v;
    view vk, vv;
} cache_arg;

/* Decodes a cache description and checks it against the current batch
 * (`rope`: the shaped head_dim is even, as the RoPE fusions need). */
static const binv_kv_cache *rd_cache(reader *r, verdict *vd, cache_arg *ca,
                                     const binv_kv_batch **batch, int pool_use, int rope) {
    uint8_t b = u8(r);
    ca->c.dtype = rd_dtype(r);
    ca->c.num_pages = rd_size(r);
    ca->c.kv_heads = rd_size(r);
    ca->c.head_dim = rd_size(r);
    ca->hk = rd_handle(r);
    ca->hv = rd_handle(r);
    if (b & 1) ca->c.head_dim = rope ? 2 * (ca->c.head_dim % 32 + 1) : ca->c.head_dim % 64 + 1;
    if (b & 2) ca->c.kv_heads = ca->c.kv_heads % 4 + 1;
    if (b & 4) ca->c.num_pages = W.b_pages + (b >> 6);
    ca->c.k = W.h[ca->hk].mem;
    ca->c.v = W.h[ca->hv].mem;
    *batch = W.batch;
    if ((b & 0x38) == 0x38) *batch = NULL;
    if (!*batch) bad(vd, "batch is NULL");
    else if (W.batch_foreign) bad(vd, "batch of another cl_context");
    if (b == 0xF7) {
        bad(vd, "cache is NULL");
        return NULL;
    }
    enum_dtype(vd, ca->c.dtype);
    const size_t es = dtype_ok(ca->c.dtype) ? esize(ca->c.dtype) : 4;
    const binv_kv_cache *c = &ca->c;
    if (c->head_dim == 0 || c->head_dim > 256) bad(vd, "head_dim not in 1..256");
    if (c->kv_heads == 0) bad(vd, "kv_heads 0");
    if (c->kv_heads > 64) gray(vd);
    size_t pool = 0;
    int pool_ok = binv_mul_ok(c->num_pages, BINV_KV_PAGE_SIZE, &pool) &&
                  binv_mul_ok(pool, c->kv_heads, &pool) && binv_mul_ok(pool, c->head_dim, &pool);
    ca->ok_k = ca->ok_v = 0;
    if (!pool_ok) bad(vd, "pool extent overflows");
    else {
        /* binv.h: a step without new tokens is an empty view of the pools
         * (no overlap, no access-flag rule); their size still may be checked. */
        const size_t prow = *batch && !W.batch_foreign && W.b_tokens ? 1 : 0;
        if (!prow) {
            verdict t = {0};
            view fk = {ca->hk, 0, 1, pool, pool, es}, fv = {ca->hv, 0, 1, pool, pool, es};
            check_view(&t, &fk, U_IN, "cache->k");
            check_view(&t, &fv, U_IN, "cache->v");
            if (t.v != V_OK) gray(vd);
        }
        ca->vk = (view){ca->hk, 0, prow, pool, pool, es};
        ca->vv = (view){ca->hv, 0, prow, pool, pool, es};
        ca->ok_k = check_view(vd, &ca->vk, pool_use, "cache->k");
        ca->ok_v = check_view(vd, &ca->vv, pool_use, "cache->v");
        if (pool == 0) gray(vd);
        /* binv.h: empty views (no new tokens) overlap nothing. */
        const int step_has_tokens = *batch && !W.batch_foreign && W.b_tokens;
        if (ca->ok_k && ca->ok_v && views_share(&ca->vk, &ca->vv)) {
            if (step_has_tokens) bad(vd, "K and V pools overlap");
            else gray(vd);
        }
        /* A pool over the batch's metadata (read-only: an appended pool is
         * already a must-fail). */
        if (W.h[ca->hk].root == R_POS || W.h[ca->hv].root == R_POS) gray(vd);
    }
    if (*batch && !W.batch_foreign) {
        size_t maxpage = 0;
        for (size_t s = 0; s < W.b_seqs; s++)
            for (size_t i = 0; i < (W.b_ctx[s] + 15) / 16; i++)
                if (W.b_pt[s * W.b_max_pages + i] + (size_t)1 > maxpage)
                    maxpage = W.b_pt[s * W.b_max_pages + i] + (size_t)1;
        if (c->num_pages < maxpage) bad(vd, "a page the batch uses is past cache->num_pages");
        else if (c->num_pages < W.b_pages) gray(vd);
    }
    return c;
}

/* binv.h: the fusions write the bits of binv_rope (on q in place and on
 * k_new) followed by binv_kv_append, and leave k_new unrotated.  After a
 * fused call that had to succeed, the roots are put back as they were before
 * it (W.pre), the unfused calls are replayed on W.q (binv_rope on a copy of
 * k_new's rows in W.scratch, which is no root), and every root must come out
 * with the fused call's bytes. */
typedef struct fused_call {
    const binv_kv_cache *c;
    const binv_kv_batch *batch;
    int withq, hq, hk, hv;
    size_t T, heads, qo, ldq, ko, ldk, vo, ldv;
    float theta;
} fused_call;

static void check_unfused(const fused_call *f) {
    const binv_kv_cache *c = f->c;
    const size_t es = esize(c->dtype), kvd = c->kv_heads * c->head_dim;
    const cl_mem pos = binv_kv_batch_positions(f->batch);
    for (int i = 0; i < NROOTS; i++) {
        root *rt = &W.roots[i];
        if (rt->mem && rt->size && memcmp(W.pre[i], rt->shadow, rt->size))
            CHECK_CL(clEnqueueWriteBuffer(rt->q, rt->mem, CL_TRUE, 0, rt->size, W.pre[i], 0, NULL,
                                          NULL));
    }
    binv_status st = BINV_SUCCESS;
    const char *step = "binv_rope of q";
    if (f->withq)
        st = binv_rope(W.ctx, W.q, c->dtype, f->T, f->heads, c->head_dim, W.h[f->hq].mem, f->qo,
                       f->ldq, pos, 0, f->theta, 0, NULL, NULL);
    if (st == BINV_SUCCESS) {
        step = "binv_rope of k_new's copy";
        CHECK_CL(clEnqueueCopyBuffer(W.q, W.h[f->hk].mem, W.scratch, f->ko * es, 0,
                                     ((f->T - 1) * f->ldk + kvd) * es, 0, NULL, NULL));
        st = binv_rope(W.ctx, W.q, c->dtype, f->T, c->kv_heads, c->head_dim, W.scratch, 0, f->ldk,
                       pos, 0, f->theta, 0, NULL, NULL);
    }
    if (st == BINV_SUCCESS) {
        step = "binv_kv_append";
        st = binv_kv_append(W.ctx, W.q, c, f->batch, W.scratch, 0, f->ldk, W.h[f->hv].mem, f->vo,
                            f->ldv, 0, NULL, NULL);
    }
    char m[200];
    if (st != BINV_SUCCESS) {
        snprintf(m, sizeof m, "the unfused replay's %s failed", step);
        violation(m, st);
    }
    finish_all();
    for (int i = 0; i < NROOTS; i++) {
        root *rt = &W.roots[i];
        if (!rt->mem || !rt->size) continue;
        root_read(i, rt->now);
        for (size_t j = 0; j < rt->size; j++)
            if (rt->now[j] != rt->shadow[j]) {
                snprintf(m, sizeof m, "byte %zu of root %d: fused 0x%02x, unfused 0x%02x", j, i,
                         rt->shadow[j], rt->now[j]);
                violation(m, BINV_SUCCESS);
            }
    }
    W.unfused_checks++;
}

/* q of binv_kv_append_rope_q against k_new / v_new: no shared byte
 * (BINV_ERROR_ALIASING); interleaved rows of one stride (a qkv row) are
 * fine, other interleavings a library may reject. */
static void q_apart(verdict *vd, const view *q, int okq, const view *x, int okx, const char *what) {
    if (!okq || !okx) return;
    if (views_share(q, x)) bad(vd, what);
    else if (views_span_overlap(q, x) && q->rows > 1 && q->ld != x->ld) gray(vd);
}

/* binv_kv_append and its RoPE fusions (op): the fusions read theta after
 * binv_kv_append's bytes, and binv_kv_append_rope_q then q's. */
static void do_append(reader *r, int op) {
    const int rope = op != OP_APPEND, withq = op == OP_APPEND_ROPE_Q;
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    cache_arg ca;
    const binv_kv_batch *batch;
    masks_clear();
    /* The pools are written (the step's slots); a write-only pool may be fine. */
    const binv_kv_cache *c = rd_cache(r, &vd, &ca, &batch, U_OUT_MAYBE_READ, rope);
    int hk = rd_handle(r), hv = rd_handle(r), hq = 12;
    size_t ko = rd_size(r), ldk = rd_size(r), vo = rd_size(r), ldv = rd_size(r);
    uint8_t shape = u8(r);
    float theta = rope ? rd_float(r, 10000.0f) : 0.0f;
    size_t heads = 0, qo = 0, ldq = 0;
    if (withq) {
        heads = rd_size(r);
        hq = rd_handle(r);
        qo = rd_size(r);
        ldq = rd_size(r);
        if (shape & 8) heads = ca.c.kv_heads * (heads % 4 + 1);
    }
    size_t kvd = 0, qw = 0;
    int wok = binv_mul_ok(ca.c.kv_heads, ca.c.head_dim, &kvd);
    const int qok = !withq || binv_mul_ok(heads, ca.c.head_dim, &qw);
    if (shape & 1) ldk = kvd;
    if (shape & 2) ldv = kvd;
    if (shape & 4) ldq = qw;
    /* One qkv row per token (q | k | v | pad), a model's fused projection. */
    if (withq && (shape & 0x10) && wok && qok && kvd <= 0x10000 && qw <= 0x1000000 &&
        qo <= 0x1000000) {
        hk = hv = hq;
        ko = qo + qw;
        vo = ko + kvd;
        ldq = ldk = ldv = qw + 2 * kvd + (shape >> 5 & 3);
    }
    const size_t T = batch && !W.batch_foreign ? W.b_tokens : 0;
    const size_t es = dtype_ok(ca.c.dtype) ? esize(ca.c.dtype) : 4;
    if (c && wok && T && (ldk < kvd || ldv < kvd)) bad(&vd, "ldk/ldv < kv_heads*head_dim");
    if (!T) gray(&vd);
    /* binv.h: binv_rope's rules for head_dim (even) and theta; q's heads. */
    if (rope && c && ca.c.head_dim % 2) bad(&vd, "head_dim odd (RoPE)");
    if (rope && (!(theta > 1.0f) || !isfinite(theta))) bad(&vd, "theta not finite > 1");
    if (withq && (heads == 0 || heads > 0xffff)) bad(&vd, "heads not in 1..0xffff");
    if (withq && heads > 1024) gray(&vd);
    if (withq && c && qok && T && ldq < qw) bad(&vd, "ldq < heads*head_dim");
    view vkn = {hk, ko, T, kvd, ldk, es}, vvn = {hv, vo, T, kvd, ldv, es};
    view vq = {hq, qo, T, qw, ldq, es};
    int okk = 0, okv = 0, okq = 0;
    if (c && wok) {
        okk = check_view(&vd, &vkn, 0, "k_new");
        okv = check_view(&vd, &vvn, 0, "v_new");
    }
    if (withq && c && qok) {
        okq = check_view(&vd, &vq, U_INOUT, "q");
        q_apart(&vd, &vq, okq, &vkn, okk, "q overlaps k_new");
        q_apart(&vd, &vq, okq, &vvn, okv, "q overlaps v_new");
        if (ca.ok_k) no_overlap(&vd, &vq, okq, &ca.vk, 1, 0, "q overlaps the K pool");
        if (ca.ok_v) no_overlap(&vd, &vq, okq, &ca.vv, 1, 0, "q overlaps the V pool");
    }
    /* The written slots: token t of sequence s at position p goes to page
     * pt[s][p / 16], slot p % 16 of each pool. */
    if (c && ca.ok_k && ca.ok_v && vd.v != V_BAD && T) {
        for (int pass = 0; pass < 2; pass++) {
            const view *pool = pass ? &ca.vv : &ca.vk;
            for (size_t s = 0; s < W.b_seqs; s++)
                for (cl_uint p = W.b_ctx[s] - W.b_q[s]; p < W.b_ctx[s]; p++) {
                    size_t page = W.b_pt[s * W.b_max_pages + p / 16];
                    view slot = {pool->h, (page * 16 + p % 16) * kvd, 1, kvd, kvd, es};
                    if ((okk && views_share(&slot, &vkn)) || (okv && views_share(&slot, &vvn)))
                        bad(&vd, "k_new/v_new overlaps a slot the call writes");
                    view_mark(&slot, 1, 0);
                }
        }
        if ((okk && (views_span_overlap(&vkn, &ca.vk) || views_span_overlap(&vkn, &ca.vv))) ||
            (okv && (views_span_overlap(&vvn, &ca.vk) || views_span_overlap(&vvn, &ca.vv))))
            gray(&vd);
    }
    if (okq && vd.v != V_BAD) view_mark(&vq, 1, 0);
    snprintf(g_desc, sizeof g_desc,
             "%s dt=%d pages=%zu kvh=%zu hd=%zu k=h%d v=h%d batch=%p T=%zu k_new=h%d+%zu "
             "ld%zu v_new=h%d+%zu ld%zu theta=%g heads=%zu q=h%d+%zu ld%zu queue=%p nev=%u ev=%d "
             "verdict=%d",
             OP_NAMES[op], (int)ca.c.dtype, ca.c.num_pages, ca.c.kv_heads, ca.c.head_dim, ca.hk,
             ca.hv, (const void *)batch, T, hk, ko, ldk, hv, vo, ldv, theta, heads, hq, qo, ldq,
             (void *)e.q, e.nev, e.want_event, vd.v);
    const int replay = rope && vd.v == V_OK && T;
    if (replay)
        for (int i = 0; i < NROOTS; i++)
            if (W.roots[i].size) memcpy(W.pre[i], W.roots[i].shadow, W.roots[i].size);
    cl_event ev = NULL, *pev = e.want_event ? &ev : NULL;
    binv_status st;
    if (op == OP_APPEND)
        st = binv_kv_append(e.ctx, e.q, c, batch, W.h[hk].mem, ko, ldk, W.h[hv].mem, vo, ldv,
                            e.nev, e.wl, pev);
    else if (!withq)
        st = binv_kv_append_rope(e.ctx, e.q, c, batch, W.h[hk].mem, ko, ldk, W.h[hv].mem, vo, ldv,
                                 theta, e.nev, e.wl, pev);
    else
        st = binv_kv_append_rope_q(e.ctx, e.q, c, batch, heads, W.h[hq].mem, qo, ldq,
                                   W.h[hk].mem, ko, ldk, W.h[hv].mem, vo, ldv, theta, e.nev, e.wl,
                                   pev);
    after_call(&vd, &e, st, ev);
    if (replay) {
        const fused_call f = {c, batch, withq, hq, hk, hv, T, heads, qo, ldq, ko, ldk, vo, ldv,
                              theta};
        check_unfused(&f);
    }
}

static void do_attention(reader *r) {
    verdict vd = {0};
    call_env e;
    rd_env(r, &e, &vd);
    cache_arg ca;
    const binv_kv_batch *batch;
    masks_clear();
    const binv_kv_cache *c = rd_cache(r, &vd, &ca, &batch, U_IN, 0);
    size_t heads = rd_size(r);
    float scale = rd_float(r, 0.125f);
    int hq = rd_handle(r), ho = rd_handle(r);
    size_t qo = rd_size(r), ldq = rd_size(r), oo = rd_size(r), ldo = rd_size(r);
    uint8_t shape = u8(r);
    if (shape & 1) heads = ca.c.kv_heads * (heads % 4 + 1);
    size_t width = 0;
    int wok = binv_mul_ok(heads, ca.c.head_dim, &width);
    if (shape & 2) ldq = width;
    if (shape & 4) ldo = width;
    const size_t T = batch && !W.batch_foreign ? W.b_tokens : 0;
    const size_t es = dtype_ok(ca.c.dtype) ? esize(ca.c.dtype) : 4;
    if (!isfinite(scale)) bad(&vd, "scale not finite");
    if (c && ca.c.kv_heads && heads % ca.c.kv_heads) bad(&vd, "heads not a multiple of kv_heads");
    if (heads == 0) gray(&vd);
    if (heads > 1024) gray(&vd);
    if (!wok && c) bad(&vd, "heads * head_dim overflows");
    if (c && wok && T && (ldq < width || ldo < width)) bad(&vd, "ldq/ldo < heads*head_dim");
    if (!T) gray(&vd);
    view vq = {hq, qo, T, width, ldq, es}, vo = {ho, oo, T, width, ldo, es};
    int okq = 0, oko = 0;
    if (c && wok) {
        okq = check_view(&vd, &vq, 0, "q");
        oko = check_view(&vd, &vo, 1, "o");
        no_overlap(&vd, &vo, oko, &vq, okq, 0, "o overlaps q");
        if (ca.ok_k) no_overlap(&vd, &vo, oko, &ca.vk, 1, 0, "o overlaps the K pool");
        if (ca.ok_v) no_overlap(&vd, &vo, oko, &ca.vv, 1, 0, "o overlaps the V pool");
        if (oko && W.h[ho].root == R_POS) bad(&vd, "o is the batch's metadata");
        if (oko) view_mark(&vo, 1, 0);
    }
    snprintf(g_desc, sizeof g_desc,
             "attention dt=%d pages=%zu kvh=%zu hd=%zu k=h%d v=h%d batch=%p T=%zu heads=%zu "
             "scale=%g q=h%d+%zu ld%zu o=h%d+%zu ld%zu q=%p nev=%u ev=%d verdict=%d",
             (int)ca.c.dtype, ca.c.num_pages, ca.c.kv_heads, ca.c.head_dim, ca.hk, ca.hv,
             (const void *)batch, T, heads, scale, hq, qo, ldq, ho, oo, ldo, (void *)e.q, e.nev,
             e.want_event, vd.v);
    cl_event ev = NULL;
    binv_status st = binv_attention(e.ctx, e.q, c, batch, heads, scale, W.h[hq].mem, qo, ldq,
                                    W.h[ho].mem, oo, ldo, e.nev, e.wl, e.want_event ? &ev : NULL);
    after_call(&vd, &e, st, ev);
}

/* ---- context creation and the small entry points ---------------------------- */
static void do_ctx(reader *r) {
    verdict vd = {0};
    call_env e = {0};
    /* Options as bytes, with struct_size anywhere from 0 to past the struct:
     * a torn field must not be read as a pointer. */
    struct {
        binv_options o;
        char pad[32];
    } big;
    memset(&big, 0, sizeof big);
    uint8_t b = u8(r);
    big.o.struct_size = b < 0xC0 ? sizeof(binv_options) : (size_t)(b & 0x3F);
    big.o.schedule = (binv_schedule)(u8(r) < 0xF0 ? u8(r) & 1 : (int)u32(r));
    big.o.cache_dir = NULL;
    big.o.path = (binv_path)(u8(r) < 0xF0 ? 0 : (int)u32(r));
    /* Bytes past the field boundary the caller declared are garbage. */
    unsigned char *raw = (unsigned char *)&big;
    for (size_t i = big.o.struct_size; i < sizeof big; i++) raw[i] = 0xA5;
    const binv_options *opts = (u8(r) & 0x0F) == 0x0F ? NULL : &big.o;
    cl_context c = W.cl;
    cl_device_id d = W.dev;
    uint8_t sel = u8(r);
    if (sel == 0xFF) { c = NULL; bad(&vd, "context NULL"); }
    if (sel == 0xFE) { d = NULL; bad(&vd, "device NULL"); }
    if (sel == 0xFD) c = W.cl2; /* holds the same device: valid */
    binv_context *out = (binv_context *)(uintptr_t)0x1;
    binv_context **pout = sel == 0xFC ? NULL : &out;
    if (!pout) bad(&vd, "out NULL");
    if (opts) {
        /* binv.h: struct_size < sizeof(size_t) is an error; a field counts
         * only when it lies wholly inside struct_size (else its default). */
        const size_t ss = opts->struct_size;
        const size_t end_sched = offsetof(binv_options, schedule) + sizeof(binv_schedule);
        const size_t end_path = offsetof(binv_options, path) + sizeof(binv_path);
        if (ss < sizeof(size_t)) bad(&vd, "struct_size < sizeof(size_t)");
        if (ss >= end_sched && (unsigned)opts->schedule > 1) bad(&vd, "schedule out of range");
        if (ss >= end_path && (unsigned)opts->path > 1) gray(&vd);
        if (ss > sizeof(binv_options)) gray(&vd); /* a newer caller's struct */
    }
    snprintf(g_desc, sizeof g_desc, "context_create ss=%zu sched=%d path=%d opts=%p sel=%u v=%d",
             big.o.struct_size, (int)big.o.schedule, (int)big.o.path, (const void *)opts, sel, vd.v);
    binv_status st = binv_context_create(c, d, opts, pout);
    if (pout && st != BINV_SUCCESS && out && out != (binv_context *)(uintptr_t)0x1)
        violation("error but *out is a context", st);
    masks_clear();
    after_call(&vd, &e, st, NULL);
    if (st == BINV_SUCCESS) {
        if (!out || out == (binv_context *)(uintptr_t)0x1) violation("success without a context", st);
        (void)binv_context_path(out);
        if (!binv_context_last_error(out)) violation("last_error NULL", st);
        binv_context_destroy(out);
    }
}

static void do_misc(reader *r) {
    uint8_t b = u8(r);
    binv_dtype dt = rd_dtype(r);
    size_t n = rd_size(r);
    snprintf(g_desc, sizeof g_desc, "misc %u dt=%d n=%zu", b, (int)dt, n);
    size_t g = binv_gemm_chunk_size(dt, n), rw = binv_rows_chunk_size(dt, n),
           at = binv_attention_split_size(dt, n);
    if (!dtype_ok(dt) && (g || rw || at)) violation("chunk size for an unknown dtype", 0);
    if (dtype_ok(dt) && (!rw || !at)) violation("chunk size 0 for a valid dtype", 0);
    const char *s = binv_status_string((binv_status)(int)u32(r));
    if (!s || !s[0]) violation("empty status string", 0);
    if (binv_kv_batch_tokens(NULL) != 0 || binv_kv_batch_positions(NULL) != NULL)
        violation("batch accessors on NULL", 0);
    if (binv_context_path(NULL) != BINV_PATH_PORTABLE) violation("path of NULL", 0);
    const char *m = binv_context_last_error(NULL);
    if (!m || !m[0]) violation("last_error(NULL) empty", 0);
    binv_context_destroy(NULL);
    binv_kv_batch_destroy(NULL);
    if ((b & 0xF0) == 0xF0) drop_batch(); /* binv_kv_batch_destroy of a live batch */
}

/* ---- entry ----------------------------------------------------------------- */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    world_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    world_init();
    reader r = {data, size, 0};
    fill_roots(u8(&r));
    for (int i = 0; i < 6 && r.i < r.n; i++) {
        int op = u8(&r) % NOPS;
        g_op = OP_NAMES[op];
        g_opi = op;
        switch (op) {
        case OP_GEMM: do_gemm(&r); break;
        case OP_RMS: case OP_ADDRMS: case OP_LN: case OP_SM: case OP_LSM: case OP_RSUM:
        case OP_RMEAN: do_rows(&r, op); break;
        case OP_SWIGLU: do_swiglu(&r); break;
        case OP_BATCH: do_batch(&r); break;
        case OP_BATCH_DESTROY: drop_batch(); break;
        case OP_ROPE: case OP_ROPE_BWD: do_rope(&r, op); break;
        case OP_APPEND: case OP_APPEND_ROPE: case OP_APPEND_ROPE_Q: do_append(&r, op); break;
        case OP_ATTN: do_attention(&r); break;
        case OP_CTX: do_ctx(&r); break;
        case OP_SEL_LSM: do_selected(&r); break;
        case OP_RMSBWD: do_rmsbwd(&r); break;
        case OP_SWIGLU_BWD: do_swiglu_bwd(&r); break;
        default: do_misc(&r); break;
        }
    }
    /* Every input starts from the same state: no batch survives it. */
    drop_batch();
    return 0;
}

/* Counts for the driver script (printed at exit with -print_final_stats). */
__attribute__((destructor)) static void report(void) {
    if (!W.calls || !getenv("FUZZ_API_STATS")) return;
    fprintf(stderr, "fuzz_api: %llu calls, %llu must-fail, %llu must-succeed\n", W.calls,
            W.must_fail, W.must_succeed);
    for (int i = 0; i < NOPS; i++)
        if (W.op_n[i][0])
            fprintf(stderr, "fuzz_api:   %-25s %llu calls, %llu succeeded, %llu must-fail, %llu "
                    "must-succeed\n", OP_NAMES[i], W.op_n[i][0], W.op_n[i][1], W.op_n[i][2],
                    W.op_n[i][3]);
    fprintf(stderr, "fuzz_api: %llu fused calls compared with binv_rope + binv_kv_append\n",
            W.unfused_checks);
    fprintf(stderr, "fuzz_api: %zu selected calls compared with binv_log_softmax + gather\n",
            g_sel_checks);
}
