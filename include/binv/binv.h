/*
 * libbinv-cl — batch-invariant OpenCL kernels.
 *
 * THE INVARIANCE CONTRACT (enforced by the test suite, bit for bit):
 *  1. Run-to-run: same inputs, device and library version give the same bits.
 *  2. Batch invariance: row i of an output is bitwise identical for every batch
 *     size (m / rows), every position of the row in the batch, every offset,
 *     and whatever the other rows hold.
 *  3. Portable bits: the same bits on every IEEE-754-conforming OpenCL device
 *     (PoCL on x86 and NVIDIA GPUs at least).  This holds because the
 *     reduction schedule of an output element — chunk size, order inside a
 *     chunk, order in which chunk partials are combined — is a function of the
 *     reduced length and the dtype only.  Tiling of the other dimensions,
 *     work-group sizes and which kernel runs may depend on anything; every path
 *     executes that one schedule.  docs/schedules.md writes it down.
 *  4. Small batches are fast too: the fixed chunks are run in parallel
 *     (split-K along the fixed chunk boundaries) and combined in the fixed
 *     order, so a decode-sized GEMM fills the GPU with the same bits.
 *  5. BINV_SCHEDULE_ADAPTIVE selects the shape-adaptive schedule a
 *     throughput-tuned library would use.  It is correct, NOT invariant, and
 *     exists so that the variance invariance removes can be measured.
 *
 * CONVENTIONS
 *  - Matrices are row-major; offsets and leading dimensions count elements.
 *  - Queues and buffers passed in are borrowed: the library never releases
 *    them.  An event returned through `event` belongs to the caller, who must
 *    clReleaseEvent() it.  Pass event = NULL if you do not want one.
 *  - Every entry point validates its arguments before it enqueues anything: on
 *    error it returns a distinct binv_status, stores a message readable with
 *    binv_context_last_error(), and writes nothing to the outputs.
 *  - Buffers are checked where they live: a sub-buffer is resolved to its
 *    root buffer and byte range (CL_MEM_ASSOCIATED_MEMOBJECT, CL_MEM_OFFSET),
 *    and buffers created with CL_MEM_USE_HOST_PTR to their host bytes, so an
 *    output that shares a byte with another argument it may not alias is
 *    BINV_ERROR_ALIASING whatever cl_mem handles name them.  Empty views (no
 *    rows, no new tokens) overlap nothing.  An output may not be
 *    CL_MEM_READ_ONLY nor an input CL_MEM_WRITE_ONLY (BINV_ERROR_ACCESS_FLAGS),
 *    nor may an output overlap a KV batch's metadata.  Buffers, queues and
 *    wait-list events of another cl_context are BINV_ERROR_CONTEXT_MISMATCH.
 *  - Outputs are written all or nothing: where a call enqueues several
 *    kernels, the earlier ones write only the library's workspace, except in
 *    binv_attention (see there).
 *  - A context's caches are bounded: scratch workspaces for the 16 most
 *    recently used in-order queues (an evicted queue is released and gets a
 *    new workspace on its next use), RoPE tables for the 8 most recently used
 *    (theta, head_dim) pairs.
 *  - The library never calls exit()/abort() and prints nothing unless the
 *    environment variable BINV_DEBUG is set (then it logs to stderr).
 *  - Thread safety: one binv_context may be used by several host threads at
 *    once, each with its own (or a shared) in-order command queue.
 */
#ifndef BINV_BINV_H
#define BINV_BINV_H

#include <stddef.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(BINV_BUILDING_SHARED)
#define BINV_API __declspec(dllexport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define BINV_API __attribute__((visibility("default")))
#else
#define BINV_API
#endif

#define BINV_VERSION_MAJOR 0
#define BINV_VERSION_MINOR 1
#define BINV_VERSION_PATCH 0
#define BINV_VERSION_STRING "0.1.0"

/* Status codes.  BINV_SUCCESS is 0; OpenCL error codes (negative, > -2000)
 * pass through unchanged; the library's own codes are -2000 and below and are
 * never renumbered (append only). */
typedef int binv_status;
enum {
    BINV_SUCCESS = 0,
    BINV_ERROR_INVALID_ARGUMENT = -2000,         /* NULL pointer or malformed options */
    BINV_ERROR_INVALID_DIMENSION = -2001,        /* sizes whose extents overflow size_t */
    BINV_ERROR_INVALID_LEADING_DIMENSION = -2002,/* ld smaller than the row length */
    BINV_ERROR_BUFFER_TOO_SMALL = -2003,         /* view past the buffer's CL_MEM_SIZE */
    BINV_ERROR_UNSUPPORTED_DTYPE = -2004,        /* dtype not one of binv_dtype */
    BINV_ERROR_UNSUPPORTED_DEVICE = -2005,       /* device lacks what the library needs */
    BINV_ERROR_BUILD_FAILED = -2006,             /* kernel build failed; log in last_error */
    BINV_ERROR_OUT_OF_HOST_MEMORY = -2007,
    BINV_ERROR_INVALID_ENUM = -2008,             /* transpose / schedule out of range */
    BINV_ERROR_CONTEXT_MISMATCH = -2009,         /* queue or buffer of another cl_context/device */
    BINV_ERROR_ALIASING = -2010,                 /* output overlaps an input it may not alias */
    BINV_ERROR_INVALID_VALUE = -2011,            /* a scalar out of its domain (NaN eps, ...) */
    BINV_ERROR_ACCESS_FLAGS = -2012              /* an output is CL_MEM_READ_ONLY or an input
                                                    CL_MEM_WRITE_ONLY (appended in 0.2) */
};

typedef struct binv_context binv_context;

typedef enum binv_dtype { BINV_DTYPE_F32 = 1, BINV_DTYPE_F16 = 2, BINV_DTYPE_BF16 = 3 } binv_dtype;
typedef enum binv_transpose { BINV_NO_TRANS = 0, BINV_TRANS = 1 } binv_transpose;
typedef enum binv_schedule { BINV_SCHEDULE_INVARIANT = 0, BINV_SCHEDULE_ADAPTIVE = 1 } binv_schedule;

/* Options for binv_context_create.  Set struct_size = sizeof(binv_options);
 * fields past an older caller's struct_size take their defaults, so the struct
 * can grow without breaking callers.  A field counts only when it lies wholly
 * inside struct_size: a struct_size that ends inside a field (20 on LP64 cuts
 * cache_dir) leaves that field at its default too.  struct_size below
 * sizeof(size_t) is BINV_ERROR_INVALID_ARGUMENT. */
/* Kernel path.  PORTABLE: OpenCL C only, the same bits on every device.
 * NATIVE: on NVIDIA GPUs of compute capability >= 8.0, bf16/f16 binv_gemm in
 * the LLM layout (A NO_TRANS, B TRANS) runs on tensor cores (inline PTX
 * mma.sync; on compute capability 9.0 also wgmma, built for sm_90a from the
 * driver's own PTX): still batch-invariant and deterministic, but its bits
 * are fixed per GPU architecture, not portable (docs/schedules.md).  Everything else
 * (f32, other layouts, other ops, other devices) runs the portable path;
 * binv_context_path() says which one a context got. */
typedef enum binv_path { BINV_PATH_PORTABLE = 0, BINV_PATH_NATIVE = 1 } binv_path;

typedef struct binv_options {
    size_t struct_size;
    binv_schedule schedule;  /* default BINV_SCHEDULE_INVARIANT */
    const char *cache_dir;   /* on-disk program-binary cache; NULL = none.
                                The string is copied. */
    binv_path path;          /* default BINV_PATH_PORTABLE (appended in 0.2) */
} binv_options;

/* Creates a library context on one device of an OpenCL context.  Both are
 * borrowed (retained until binv_context_destroy).  Kernels are built lazily on
 * first use.  options may be NULL (defaults). */
BINV_API binv_status binv_context_create(cl_context context, cl_device_id device,
                                const binv_options *options, binv_context **out);
BINV_API void binv_context_destroy(binv_context *ctx); /* NULL-safe */
/* The path ctx runs: BINV_PATH_NATIVE only when it was asked for and the
 * device supports it (else the portable fallback; binv_context_last_error
 * on this thread then says why).  BINV_PATH_PORTABLE for NULL. */
BINV_API binv_path binv_context_path(const binv_context *ctx);

/* The message of the last error this thread met on ctx ("" if none).  Valid
 * until this thread's next call on ctx or ctx's destruction.  ctx may be NULL
 * (a fixed message for calls that were given a NULL context). */
BINV_API const char *binv_context_last_error(const binv_context *ctx);
BINV_API const char *binv_status_string(binv_status status);
BINV_API const char *binv_version_string(void);

/* The K-chunk length of binv_gemm's invariant schedule for reduction length k
 * and dtype (docs/schedules.md).  Exposed so tools and tests can state the
 * schedule; 0 for an unknown dtype. */
BINV_API size_t binv_gemm_chunk_size(binv_dtype dtype, size_t k);

/* C = alpha * op(A) * op(B) + beta * C, with op(A) m x k and op(B) k x n.
 * Storage dtype for A, B and C; accumulation is f32 for every dtype (f16 via
 * vload_half/vstore_half_rte, bf16 as ushort with round-to-nearest-even on
 * store).  trans_b = BINV_TRANS is the LLM weight layout W[n, k].
 * beta == 0: C is not read (NaN in C does not propagate), as in BLAS.
 * m == 0 or n == 0: quick return.  k == 0: C = beta * C (alpha * 0 added).
 * C may not overlap A or B (BINV_ERROR_ALIASING).
 * Scratch: the context keeps one f32 workspace per in-order queue (grown on
 * demand, freed with the context) for chunk partials (small m) and, on GPUs,
 * the running totals of large GEMMs (m * n * 4 bytes, used up to 256 MB);
 * an out-of-order queue gets a private one per call.  Calls that share a
 * queue from several host threads are serialised around it. */
BINV_API binv_status binv_gemm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                      binv_transpose trans_a, binv_transpose trans_b,
                      size_t m, size_t n, size_t k, float alpha,
                      cl_mem a, size_t a_offset, size_t lda,
                      cl_mem b, size_t b_offset, size_t ldb, float beta,
                      cl_mem c, size_t c_offset, size_t ldc,
                      cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* ---- Row reductions (along the last dimension; f32 accumulation) ----------
 * Common arguments as for binv_gemm: rows x cols matrices, row-major, element
 * offsets and leading dimensions (ld >= cols).  Each output row is a function
 * of its input row alone and has the same bits for every `rows`, every
 * position and every device (docs/schedules.md).  rows == 0 is a no-op;
 * cols == 0 is BINV_ERROR_INVALID_DIMENSION.  Weight/gamma/beta are vectors
 * of cols elements of the same dtype.  y may be x itself (same offset and ld:
 * in place) except for binv_add_rmsnorm; other overlaps are
 * BINV_ERROR_ALIASING.  eps must be finite and >= 0 (else
 * BINV_ERROR_INVALID_VALUE). */

/* The chunk width of the invariant row schedule (docs/schedules.md). */
BINV_API size_t binv_rows_chunk_size(binv_dtype dtype, size_t cols);

/* y = x / sqrt(mean(x^2) + eps) * weight. */
BINV_API binv_status binv_rmsnorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                  size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                                  cl_mem weight, size_t weight_offset, float eps,
                                  cl_mem y, size_t y_offset, size_t ldy,
                                  cl_uint num_events, const cl_event *wait_list, cl_event *event);
/* x <- x + residual (rounded to the dtype, written back), then
 * y = rmsnorm(x) as above.  y must not overlap x or residual. */
BINV_API binv_status binv_add_rmsnorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                      size_t rows, size_t cols, cl_mem x, size_t x_offset,
                                      size_t ldx, cl_mem residual, size_t residual_offset,
                                      size_t ldr, cl_mem weight, size_t weight_offset, float eps,
                                      cl_mem y, size_t y_offset, size_t ldy, cl_uint num_events,
                                      const cl_event *wait_list, cl_event *event);
/* y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance, two-pass). */
BINV_API binv_status binv_layernorm(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                    size_t rows, size_t cols, cl_mem x, size_t x_offset,
                                    size_t ldx, cl_mem gamma, size_t gamma_offset, cl_mem beta,
                                    size_t beta_offset, float eps, cl_mem y, size_t y_offset,
                                    size_t ldy, cl_uint num_events, const cl_event *wait_list,
                                    cl_event *event);
/* y = exp(x - max) / sum(exp(x - max)).  A row of all -inf gives NaN
 * (0/0, as PyTorch); a NaN in a row gives a row of NaN; +inf in a row gives
 * NaN (inf - inf), as IEEE arithmetic implies. */
BINV_API binv_status binv_softmax(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                  size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                                  cl_mem y, size_t y_offset, size_t ldy,
                                  cl_uint num_events, const cl_event *wait_list, cl_event *event);
/* y = (x - max) - log(sum(exp(x - max))); special values as binv_softmax. */
BINV_API binv_status binv_log_softmax(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                      size_t rows, size_t cols, cl_mem x, size_t x_offset,
                                      size_t ldx, cl_mem y, size_t y_offset, size_t ldy,
                                      cl_uint num_events, const cl_event *wait_list,
                                      cl_event *event);
/* out[out_offset + i] = sum (or mean) of row i, as f32 (out is a float buffer). */
BINV_API binv_status binv_row_sum(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                  size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                                  cl_mem out, size_t out_offset, cl_uint num_events,
                                  const cl_event *wait_list, cl_event *event);
BINV_API binv_status binv_row_mean(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                   size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
                                   cl_mem out, size_t out_offset, cl_uint num_events,
                                   const cl_event *wait_list, cl_event *event);

/* ---- Elementwise --------------------------------------------------------- */
/* SwiGLU of a gated MLP: y = silu(gate) * up = gate * sigmoid(gate) * up
 * (sigmoid from the library's exp of -|gate|, f32 arithmetic, rounded to the
 * dtype once; cl/activation.cl spells out the order).  rows x cols
 * matrices with row strides ldg, ldu, ldy >= cols.  y may be gate or up itself
 * (same offset and ld); other overlaps are BINV_ERROR_ALIASING. */
BINV_API binv_status binv_swiglu(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                                 size_t rows, size_t cols, cl_mem gate, size_t gate_offset,
                                 size_t ldg, cl_mem up, size_t up_offset, size_t ldu, cl_mem y,
                                 size_t y_offset, size_t ldy, cl_uint num_events,
                                 const cl_event *wait_list, cl_event *event);

/* ---- Attention over a paged KV cache --------------------------------------
 * Layout.  K and V live in two pools of fixed-size pages:
 *   pool[page][slot][kv_head][d], slot < BINV_KV_PAGE_SIZE, d < head_dim,
 * in the cache's dtype, from element 0 of each buffer.  A sequence's token at
 * position p lives in page page_table[s][p / BINV_KV_PAGE_SIZE], slot
 * p % BINV_KV_PAGE_SIZE.  Pages of one sequence need not be contiguous or in
 * order.
 *
 * A step (binv_kv_batch) is a list of sequences, each with q_len >= 1 new
 * tokens (prefill, a chunk of a prefill, or one decode token) and ctx_len,
 * its length once they are appended: the new tokens have positions
 * ctx_len - q_len .. ctx_len - 1.  New tokens are packed sequence after
 * sequence (sequence 0's first), so token rows of Q, K_new, V_new and O are
 * numbered 0 .. num_tokens - 1 in that order.
 *
 * Schedule (docs/schedules.md): a query token at position p attends to keys
 * 0..p (causal), cut into chunks of binv_attention_split_size() keys at fixed
 * key positions; each chunk's (max, sum, weighted V) is computed in a fixed
 * order and the chunks are merged left to right with the library's exp.  The
 * bits of a token's output therefore depend on its own query and keys only:
 * not on how the prompt was chunked, on the other sequences of the step, or on
 * the device.  BINV_SCHEDULE_ADAPTIVE contexts choose the split count from
 * the batch and the device instead (not invariant). */

#define BINV_KV_PAGE_SIZE 16

/* Describes a paged KV cache; the buffers are borrowed. */
typedef struct binv_kv_cache {
    binv_dtype dtype;
    size_t num_pages; /* pages in each pool */
    size_t kv_heads;
    size_t head_dim;  /* 1 .. 256 */
    cl_mem k, v;      /* each >= num_pages * BINV_KV_PAGE_SIZE * kv_heads * head_dim elements */
} binv_kv_cache;

/* The validated, uploaded metadata of one step (create once per step, use it
 * for binv_kv_append, binv_rope's positions and every layer's
 * binv_attention, destroy).  Opaque. */
typedef struct binv_kv_batch binv_kv_batch;

/* Validates the host arrays and copies them into device memory (through
 * `queue`, blocking; nothing is retained from the caller's arrays).
 *   q_lens[s] >= 1, q_lens[s] <= ctx_lens[s] <= max_pages * BINV_KV_PAGE_SIZE,
 *   page_table[s * max_pages + i] < num_pages for every page i a sequence uses.
 * Violations return BINV_ERROR_INVALID_VALUE (page or length) or
 * BINV_ERROR_INVALID_DIMENSION (sizes), with a message naming the sequence. */
BINV_API binv_status binv_kv_batch_create(binv_context *ctx, cl_command_queue queue,
                                          size_t num_pages, size_t num_seqs,
                                          const cl_uint *q_lens, const cl_uint *ctx_lens,
                                          const cl_uint *page_table, size_t max_pages,
                                          binv_kv_batch **out);
BINV_API void binv_kv_batch_destroy(binv_kv_batch *batch); /* NULL-safe */
/* Total new tokens of the step (rows of Q, K_new, V_new, O); 0 for NULL. */
BINV_API size_t binv_kv_batch_tokens(const binv_kv_batch *batch);
/* A device buffer of cl_uint: the position of each new token (for
 * binv_rope).  Owned by the batch: valid until binv_kv_batch_destroy. */
BINV_API cl_mem binv_kv_batch_positions(const binv_kv_batch *batch);

/* Writes the step's new K and V rows (num_tokens x kv_heads*head_dim, row
 * strides ldk / ldv >= kv_heads*head_dim, cache dtype) into their pages. */
BINV_API binv_status binv_kv_append(binv_context *ctx, cl_command_queue queue,
                                    const binv_kv_cache *cache, const binv_kv_batch *batch,
                                    cl_mem k_new, size_t k_offset, size_t ldk, cl_mem v_new,
                                    size_t v_offset, size_t ldv, cl_uint num_events,
                                    const cl_event *wait_list, cl_event *event);

/* Rotary position embedding, in place, Meta / llama2.c style (interleaved
 * pairs): for head h and i < head_dim/2, with f = theta^(-2i/head_dim) and
 * a = position * f, (x[2i], x[2i+1]) <- (x0 cos a - x1 sin a, x0 sin a + x1 cos a).
 * x is tokens x (heads*head_dim) with row stride ldx; positions is a cl_uint
 * buffer (one per token, from positions_offset).  head_dim even; theta > 1
 * finite.  cos, sin and the power are the library's own (same bits on every
 * device; accurate to a few ulp for |a| < 2^20). */
BINV_API binv_status binv_rope(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                               size_t tokens, size_t heads, size_t head_dim, cl_mem x,
                               size_t x_offset, size_t ldx, cl_mem positions,
                               size_t positions_offset, float theta, cl_uint num_events,
                               const cl_event *wait_list, cl_event *event);

/* binv_rope on K_new followed by binv_kv_append, in one launch: writes
 * rope(K_new) (positions of the batch, theta as binv_rope) and V_new into
 * their pages, the same bits as the two calls.  k_new is only read (left
 * unrotated, unlike binv_rope's in-place result).  Arguments and errors as
 * binv_kv_append's, and binv_rope's for head_dim (even) and theta.
 * (Appended in 0.2, with binv_kv_append_rope_q.) */
BINV_API binv_status binv_kv_append_rope(binv_context *ctx, cl_command_queue queue,
                                         const binv_kv_cache *cache, const binv_kv_batch *batch,
                                         cl_mem k_new, size_t k_offset, size_t ldk, cl_mem v_new,
                                         size_t v_offset, size_t ldv, float theta,
                                         cl_uint num_events, const cl_event *wait_list,
                                         cl_event *event);

/* binv_kv_append_rope, and in the same launch binv_rope of q in place:
 * q is num_tokens x (heads*head_dim), row stride ldq, the cache's dtype,
 * heads 1 .. 0xffff; its bits are binv_rope's with the batch's positions.
 * q may share no byte with k_new, v_new or the pools (BINV_ERROR_ALIASING);
 * interleaved row views of one buffer (q | k | v columns of a qkv row) are
 * fine. */
BINV_API binv_status binv_kv_append_rope_q(binv_context *ctx, cl_command_queue queue,
                                           const binv_kv_cache *cache,
                                           const binv_kv_batch *batch, size_t heads, cl_mem q,
                                           size_t q_offset, size_t ldq, cl_mem k_new,
                                           size_t k_offset, size_t ldk, cl_mem v_new,
                                           size_t v_offset, size_t ldv, float theta,
                                           cl_uint num_events, const cl_event *wait_list,
                                           cl_event *event);

/* The key-chunk (split) length of the invariant attention schedule. */
BINV_API size_t binv_attention_split_size(binv_dtype dtype, size_t head_dim);

/* Causal grouped-query attention of the step's new tokens over their
 * sequences' cached keys (append the step's K/V first):
 *   o[t, h] = softmax(scale * q[t, h] . K[s, 0..p]) V[s, 0..p]
 * with kv head h / (heads / kv_heads).  q and o are num_tokens x
 * (heads*head_dim), row strides ldq / ldo, the cache's dtype; heads a
 * multiple of cache->kv_heads; scale finite.  o may not overlap q or the
 * pools.  Special values: as IEEE arithmetic implies (a NaN or inf score
 * gives a NaN row).
 * When keys are split (split states merged by a second kernel), both kernels
 * are prepared before either is enqueued; only the driver failing the second
 * clEnqueueNDRangeKernel itself (out of resources or host memory) returns an
 * error after the first ran: o's rows of tokens whose keys fit one split then
 * hold their final values and every other row is untouched. */
BINV_API binv_status binv_attention(binv_context *ctx, cl_command_queue queue,
                                    const binv_kv_cache *cache, const binv_kv_batch *batch,
                                    size_t heads, float scale, cl_mem q, size_t q_offset,
                                    size_t ldq, cl_mem o, size_t o_offset, size_t ldo,
                                    cl_uint num_events, const cl_event *wait_list,
                                    cl_event *event);

/* out[out_offset + i] = log_softmax(row i of x)[ids[ids_offset + i]] as f32, for a trainer's
 * selected-token log-probabilities, without writing the full log-softmax.  The value is the one
 * binv_log_softmax computes for that element before rounding to dtype: for F32 bitwise equal to
 * binv_log_softmax followed by a gather; for F16/BF16 that value rounded to dtype equals the
 * gathered element.  Same schedule (docs/schedules.md), so invariant like every row op.  ids is a
 * buffer of cl_uint; an id >= cols gives NaN for that row (the device cannot report it).
 * out may share no byte with x or ids (BINV_ERROR_ALIASING); ids may overlap x.  Other errors as
 * binv_log_softmax's.  (Appended in 0.2.) */
BINV_API binv_status binv_selected_log_softmax(binv_context *ctx, cl_command_queue queue,
    binv_dtype dtype, size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
    cl_mem ids, size_t ids_offset, cl_mem out, size_t out_offset,
    cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* ---- Backward (training) --------------------------------------------------
 * Deterministic backward kernels: no floating-point atomics, every sum in an
 * order fixed by the lengths alone (docs/schedules.md), so the same inputs
 * give the same bits run to run and on every device.  (Appended in 0.2.) */

/* Backward of binv_rmsnorm (y = x * weight / sqrt(mean(x^2) + eps), per row), for training.
 * dx (rows x cols, dtype) = r*(w.*dy) - x * r^3 * dot(w.*dy, x) / cols with r = 1/sqrt(mean(x^2)+eps),
 * each row's reductions with the same chunked schedule as the forward's row reductions, so a
 * row's dx is invariant to the batch (rows, row position, offsets).
 * dweight (cols floats, f32): dweight = dweight_in (accumulate != 0) or 0, then + S_1 + S_2 + ...
 * left to right, where S_c is the sum over rows [c*R, (c+1)*R) of dy*x*r in row order, R =
 * binv_rmsnorm_backward_rows_chunk() (a constant).  So splitting the rows into micro-batches on
 * multiples of R and accumulating gives the bits of one call over all rows. */
/* R is 64.  Arguments as binv_rmsnorm's (x, weight, eps; dy and dx rows x cols
 * of the dtype with row strides lddy, lddx >= cols); dweight is cols floats
 * from dweight_offset (f32 whatever the dtype).  dx may be x or dy itself
 * (same offset and ld: in place); any other overlap of dx with x, dy or the
 * weight, and any of dweight with another argument, is BINV_ERROR_ALIASING.
 * rows == 0 computes nothing: dweight is set to 0 (accumulate == 0) or left
 * as it is.  The only schedule (BINV_SCHEDULE_ADAPTIVE contexts run it too);
 * the r it uses is the invariant forward's.  Scratch: the queue's workspace,
 * (2 rows + ceil(rows / R) cols) floats. */
BINV_API size_t binv_rmsnorm_backward_rows_chunk(void);
BINV_API binv_status binv_rmsnorm_backward(binv_context *ctx, cl_command_queue queue,
    binv_dtype dtype, size_t rows, size_t cols, cl_mem x, size_t x_offset, size_t ldx,
    cl_mem weight, size_t weight_offset, float eps, cl_mem dy, size_t dy_offset, size_t lddy,
    cl_mem dx, size_t dx_offset, size_t lddx, cl_mem dweight, size_t dweight_offset,
    int accumulate, cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* ---- Backward of the elementwise ops (appended in 0.2) --------------------
 * No reduction: each output element is a fixed formula of its own inputs
 * (docs/schedules.md spells out the order), so the results are deterministic
 * and batch invariant, with the same bits on every device.  Arguments and
 * errors as the forward ops'. */

/* SwiGLU backward (binv_swiglu's y = silu(gate) * up): given dy,
 *   dup = dy * silu(g),  dgate = dy * up * s * (1 + g * (1 - s)),
 * s = sigmoid(g) with the forward's bits, f32 arithmetic, each result rounded
 * to the dtype once (docs/schedules.md: the order, and 1 - s computed as
 * sigmoid(-g)).  rows x cols matrices with row strides >= cols.  dgate and dup
 * may each be gate, up or dy itself (same offset and ld: in place); other
 * overlaps with an input, and any between dgate and dup, are
 * BINV_ERROR_ALIASING.  An infinite gate gives a NaN dgate (inf * 0). */
BINV_API binv_status binv_swiglu_backward(binv_context *ctx, cl_command_queue queue,
    binv_dtype dtype, size_t rows, size_t cols, cl_mem gate, size_t gate_offset, size_t ldg,
    cl_mem up, size_t up_offset, size_t ldu, cl_mem dy, size_t dy_offset, size_t lddy,
    cl_mem dgate, size_t dgate_offset, size_t lddg, cl_mem dup, size_t dup_offset, size_t lddu,
    cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* RoPE backward, in place on x (holding dy; it then holds dx): the rotation of
 * each pair by -a, where a is binv_rope's angle for the same position, theta
 * and head_dim, with binv_rope's cos and sin bits (sin(-a) = -sin(a) exactly):
 *   (x[2i], x[2i+1]) <- (x0 cos a + x1 sin a, -x0 sin a + x1 cos a).
 * Arguments and errors exactly as binv_rope's. */
BINV_API binv_status binv_rope_backward(binv_context *ctx, cl_command_queue queue,
                                        binv_dtype dtype, size_t tokens, size_t heads,
                                        size_t head_dim, cl_mem x, size_t x_offset, size_t ldx,
                                        cl_mem positions, size_t positions_offset, float theta,
                                        cl_uint num_events, const cl_event *wait_list,
                                        cl_event *event);

#ifdef __cplusplus
}
#endif
#endif /* BINV_BINV_H */
