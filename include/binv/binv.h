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
    BINV_ERROR_INVALID_VALUE = -2011             /* a scalar out of its domain (NaN eps, ...) */
};

typedef struct binv_context binv_context;

typedef enum binv_dtype { BINV_DTYPE_F32 = 1, BINV_DTYPE_F16 = 2, BINV_DTYPE_BF16 = 3 } binv_dtype;
typedef enum binv_transpose { BINV_NO_TRANS = 0, BINV_TRANS = 1 } binv_transpose;
typedef enum binv_schedule { BINV_SCHEDULE_INVARIANT = 0, BINV_SCHEDULE_ADAPTIVE = 1 } binv_schedule;

/* Options for binv_context_create.  Set struct_size = sizeof(binv_options);
 * fields past an older caller's struct_size take their defaults, so the struct
 * can grow without breaking callers. */
typedef struct binv_options {
    size_t struct_size;
    binv_schedule schedule;  /* default BINV_SCHEDULE_INVARIANT */
    const char *cache_dir;   /* on-disk program-binary cache; NULL = none.
                                The string is copied. */
} binv_options;

/* Creates a library context on one device of an OpenCL context.  Both are
 * borrowed (retained until binv_context_destroy).  Kernels are built lazily on
 * first use.  options may be NULL (defaults). */
BINV_API binv_status binv_context_create(cl_context context, cl_device_id device,
                                const binv_options *options, binv_context **out);
BINV_API void binv_context_destroy(binv_context *ctx); /* NULL-safe */

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
 * C may not overlap A or B (BINV_ERROR_ALIASING). */
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

#ifdef __cplusplus
}
#endif
#endif /* BINV_BINV_H */
