/* Internal declarations shared by the host runtime's files.  Not installed. */
#ifndef BINV_INTERNAL_H
#define BINV_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "binv/binv.h"
#include "tuning.h"

#define BINV_MSG_MAX 4096

/* Build options of every kernel of the library.  No -cl-fast-relaxed-math,
 * no -cl-mad-enable, no -cl-unsafe-math-optimizations: the kernels spell out
 * fma(), + and * in the library's order and every .cl file says
 * #pragma OPENCL FP_CONTRACT OFF, so no compiler may fuse or reorder.  The
 * base, then -cl-fp32-correctly-rounded-divide-sqrt where the device
 * advertises CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT (the option is not allowed
 * elsewhere), then the software divide/sqrt define for devices without it and
 * with BINV_SOFT_DIVSQRT=1 (binv_program_get). */
#define BINV_BUILD_OPTIONS_BASE "-cl-std=CL1.2"
#define BINV_BUILD_OPTIONS_CR " -cl-fp32-correctly-rounded-divide-sqrt"
#define BINV_BUILD_OPTIONS_SOFT " -DBINV_SOFT_DIVSQRT=1"

/* Per-thread error message slot (several host threads may share a context). */
typedef struct binv_err_slot {
    pthread_t thread;
    char msg[BINV_MSG_MAX];
    struct binv_err_slot *next;
} binv_err_slot;

/* A program built for one (family, options) key, cached in the context. */
typedef struct binv_program_entry {
    char *key;
    cl_program program;
    struct binv_program_entry *next;
} binv_program_entry;

/* Free cl_kernel objects by (program, name): a cl_kernel's arguments are
 * state, so one kernel object is used by one call at a time. */
typedef struct binv_kernel_entry {
    cl_program program;
    char name[64];
    cl_kernel kernel;
    struct binv_kernel_entry *next;
} binv_kernel_entry;

/* Scratch buffer (split-K partials) reused per in-order queue.  `lock` is held
 * from the first to the last enqueue that uses it, so two host threads sharing
 * a queue cannot interleave their use of it. */
typedef struct binv_workspace {
    cl_command_queue queue;
    cl_mem buffer;
    size_t size;
    cl_mem counters;   /* split-K arrival counters, all 0 between calls */
    size_t ncounters;
    pthread_mutex_t lock;
    int users;         /* threads between acquire and release (ctx->lock) */
    struct binv_workspace *next;
} binv_workspace;
/* Per-queue workspaces a context keeps (least recently used evicted). */
#define BINV_WORKSPACES 16

typedef struct binv_device_info {
    char name[256];
    char vendor[256];
    char driver_version[256];
    char device_version[256];
    char platform_version[256];
    cl_uint vendor_id;
    cl_uint compute_units;
    size_t max_work_group_size;
    cl_ulong local_mem_size;
    cl_device_type type;
} binv_device_info;

/* RoPE frequency tables, one per (theta, head_dim), built on first use. */
typedef struct binv_rope_table {
    float theta;
    size_t head_dim;
    cl_mem freq;
    struct binv_rope_table *next;
} binv_rope_table;

struct binv_context {
    cl_context cl_ctx;
    cl_device_id device;
    cl_platform_id platform;
    binv_schedule schedule;
    char *cache_dir;
    binv_device_info info;
    binv_tuning tuning; /* the BINV_* knobs, parsed once at creation (src/tuning.c) */
    int gemm_fuse; /* split-K combined in the same launch (tests: BINV_GEMM_FUSE=0 -> 2 launches) */
    int fence;     /* device-wide fence for that combine: 0 none, 1 mem_fence (CPU), 2 PTX membar.gl */
    int hw_divsqrt;   /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT: -cl-fp32-correctly-rounded-divide-sqrt */
    int soft_divsqrt; /* kernels use cl/common.cl's binv_div/binv_sqrt (-DBINV_SOFT_DIVSQRT=1):
                         devices without hw_divsqrt, or BINV_SOFT_DIVSQRT=1 (tests) */
    binv_path path; /* the path granted (native only where supported) */
    unsigned nv_cc; /* native path: NVIDIA compute capability, 10 major + minor */
    int no_wgmma;   /* native path: the driver refused the sm_90a program (sticky) */
    char path_note[512]; /* why a native request fell back */

    pthread_mutex_t lock;       /* guards the lists below */
    pthread_mutex_t build_lock; /* serialises program builds */
    binv_err_slot *errors;
    binv_program_entry *programs;
    binv_kernel_entry *free_kernels;
    binv_workspace *workspaces;
    binv_rope_table *rope_tables;
};

/* context.c ------------------------------------------------------------ */
/* binv_context_create with the knobs given instead of read from the
 * environment (NULL: read it).  Tests force paths with it:
 * binv_tuning_from_env, then binv_tuning_set. */
binv_status binv_context_create_tuned(cl_context context, cl_device_id device,
                                      const binv_options *options, const binv_tuning *tuning,
                                      binv_context **out);

/* util.c --------------------------------------------------------------- */
binv_status binv_set_error(binv_context *ctx, binv_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void binv_clear_error(binv_context *ctx);
void binv_debug(const binv_context *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Stores a message and returns `code` from the calling function when cond. */
#define BINV_RETURN_ERROR_ON(cond, ctx, code, ...)                \
    do {                                                          \
        if (cond) return binv_set_error((ctx), (code), __VA_ARGS__); \
    } while (0)
/* Same for an OpenCL call's status (passed through unchanged). */
#define BINV_CHECK_CL(ctx, err, what)                                                     \
    do {                                                                                  \
        cl_int binv_e_ = (err);                                                           \
        if (binv_e_ != CL_SUCCESS)                                                        \
            return binv_set_error((ctx), binv_e_, "%s failed: OpenCL error %d", (what),   \
                                  (int)binv_e_);                                          \
    } while (0)

/* ceil(a / b) for b > 0. */
static inline size_t binv_ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
/* a*b + c into *out without overflow; 0 on overflow. */
int binv_mul_add_size(size_t a, size_t b, size_t c, size_t *out);
size_t binv_dtype_size(binv_dtype dtype); /* 0 for an unknown dtype */
const char *binv_dtype_name(binv_dtype dtype);

/* Checks a buffer argument: non-NULL, of ctx's cl_context, and that a view of
 * `extent` elements of `elem` bytes from `offset` fits in CL_MEM_SIZE.
 * `what` names the argument in messages. */
binv_status binv_check_buffer(binv_context *ctx, cl_mem buf, size_t offset, size_t extent,
                              size_t elem, const char *what);
/* Views [po, po + pe) of p and [qo, qo + qe) of q (same units) overlap. */
int binv_views_overlap(cl_mem p, size_t po, size_t pe, cl_mem q, size_t qo, size_t qe);
/* Two rows x width views with the same row stride ld (elements) share an
 * element (interleaved views, e.g. the two halves of [gate | up] rows, do not). */
int binv_rows_views_overlap(cl_mem p, size_t po, size_t pw, cl_mem q, size_t qo, size_t qw,
                            size_t rows, size_t ld);
/* Where a view of a buffer argument lives, for overlap checks that see
 * through sub-buffers: `space` identifies the storage (the root buffer found
 * by following CL_MEM_ASSOCIATED_MEMOBJECT, or 0 = the host address space for
 * a root created with CL_MEM_USE_HOST_PTR, since two such buffers over the
 * same host memory share their storage) and `start` is the absolute byte
 * offset of the view's first element there (CL_MEM_OFFSET of every
 * sub-buffer level + the view's offset; a host address for space 0).  A view
 * is `rows` rows of `width` bytes, `ld` bytes apart; rows == 0 or width == 0
 * is empty and overlaps nothing. */
typedef struct binv_view {
    uintptr_t space;
    size_t start, rows, width, ld;
} binv_view;
/* How a kernel uses a buffer argument (binv_view_of checks its flags). */
enum { BINV_ACCESS_READ = 1, BINV_ACCESS_WRITE = 2 };
/* Resolves a buffer that binv_check_buffer accepted into a view of rows x
 * width elements of elem bytes, row stride ld elements, from element offset
 * off (rows == 1: a vector of width elements).  For a non-empty view it also
 * checks the buffer's CL_MEM_FLAGS (and its root's) against `access`: a
 * written buffer may not be CL_MEM_READ_ONLY, a read one not
 * CL_MEM_WRITE_ONLY (BINV_ERROR_ACCESS_FLAGS).  Host-access flags
 * (CL_MEM_HOST_*) do not matter: the library never maps, reads or writes a
 * caller's buffer from the host. */
binv_status binv_view_of(binv_context *ctx, cl_mem buf, size_t off, size_t rows, size_t width,
                         size_t ld, size_t elem, int access, const char *what, binv_view *v);
/* p and q share a byte (exact for vectors and for row views of one stride;
 * other row views compare their whole extents).  Empty views never do. */
int binv_view_overlap(const binv_view *p, const binv_view *q);
/* p and q are the same non-empty elements in the same layout (in place). */
int binv_view_same(const binv_view *p, const binv_view *q);
/* a*b*c into *out without overflow; 0 on overflow. */
int binv_mul3_size(size_t a, size_t b, size_t c, size_t *out);

/* Checks a queue: non-NULL, of ctx's cl_context and device. */
binv_status binv_check_queue(binv_context *ctx, cl_command_queue queue);
/* The event of a call with nothing to compute: a marker after the wait list
 * (nothing enqueued when event is NULL). */
binv_status binv_enqueue_marker(binv_context *ctx, cl_command_queue queue, cl_uint num_events,
                                const cl_event *wait_list, cl_event *event);
/* Checks num_events/wait_list consistency as clEnqueue* would, and that
 * every event belongs to ctx's cl_context (BINV_ERROR_CONTEXT_MISMATCH). */
binv_status binv_check_wait_list(binv_context *ctx, cl_uint num_events, const cl_event *wait_list);

/* OpenCL objects the context holds in its caches (workspaces: queue, buffer,
 * counters; RoPE tables; programs; pooled kernels), for tests that check the
 * caches stay bounded. */
size_t binv_context_retained_objects(binv_context *ctx);

/* program.c ------------------------------------------------------------ */
/* What a program is built from: cl/common.cl, then the (up to
 * BINV_PROGRAM_SOURCES, NULL after the last) embedded sources in order. */
#define BINV_PROGRAM_SOURCES 3
/* flags: after the source build, retarget the program's PTX to sm_90a and
 * build that (binv_ptx_sm90a; the program writes its sm_90a instructions
 * after "// BINV_SM90A " markers).  The build fails where that is refused. */
enum { BINV_PROGRAM_SM90A = 1 };
typedef struct binv_program_desc {
    const char *family; /* a name for messages and the program cache's key */
    const char *sources[BINV_PROGRAM_SOURCES];
    unsigned flags;
} binv_program_desc;
/* Returns the program of `d` built with `defines` (extra -D options that
 * select dtype and tile shapes; never floating-point behaviour).  Built once
 * per context and (family, options); later calls return the cached program. */
binv_status binv_program_get_desc(binv_context *ctx, const binv_program_desc *d,
                                  const char *defines, cl_program *out);
/* binv_program_get_desc of one source without flags. */
binv_status binv_program_get(binv_context *ctx, const char *family, const char *source,
                             const char *defines, cl_program *out);
/* PTX text of size bytes for sm_90 -> the same for sm_90a with the
 * "// BINV_SM90A " markers removed (src/program.c).  out holds size + 1
 * bytes.  0, or -1 when ptx has no ".target sm_90" directive. */
int binv_ptx_sm90a(const char *ptx, size_t size, char *out, size_t *out_size);

/* binv_program_get with the storage dtype as the only define. */
binv_status binv_program_get_dtype(binv_context *ctx, const char *family, const char *source,
                                   binv_dtype dtype, cl_program *out);
/* A kernel argument: its size and where its value is.  Written as an array
 * of BINV_ARG(variable) in the kernel's order, so that every size is the
 * variable's own (a cl_uint is 4 bytes, a cl_ulong 8, a cl_mem a handle) and
 * the count is the array's (BINV_NARGS); binv_kernel_acquire checks that
 * count against the kernel's CL_KERNEL_NUM_ARGS. */
typedef struct binv_arg {
    size_t size;
    const void *ptr;
} binv_arg;
#define BINV_ARG(x) {sizeof(x), &(x)}
#define BINV_NARGS(array) ((cl_uint)(sizeof(array) / sizeof *(array)))
/* A kernel of `program` from the pool, or a new one whose CL_KERNEL_NUM_ARGS
 * must be nargs (a mismatch is a library bug: BINV_ERROR_INVALID_ARGUMENT,
 * "internal: ..."). */
binv_status binv_kernel_acquire(binv_context *ctx, cl_program program, const char *name,
                                cl_uint nargs, cl_kernel *out);
void binv_kernel_release(binv_context *ctx, cl_program program, const char *name,
                         cl_kernel kernel);
/* Sets the nargs arguments of kernel `name` in order. */
binv_status binv_kernel_set_args(binv_context *ctx, cl_kernel kernel, const char *name,
                                 const binv_arg *args, cl_uint nargs);
/* Takes a kernel of `prog` from the pool, sets its arguments, enqueues it
 * over dims dimensions and gives it back. */
binv_status binv_kernel_launch(binv_context *ctx, cl_command_queue q, cl_program prog,
                               const char *name, const binv_arg *args, cl_uint nargs,
                               cl_uint dims, const size_t *gws, const size_t *lws, cl_uint nwait,
                               const cl_event *wait, cl_event *ev);
/* One kernel of a multi-kernel sequence (binv_kernel_launch_seq). */
typedef struct binv_launch {
    const char *name;
    const binv_arg *args;
    cl_uint nargs;
    cl_uint dims;
    const size_t *gws, *lws;
} binv_launch;
/* Enqueues the n (<= BINV_LAUNCH_SEQ_MAX) kernels of prog in order, each
 * waiting for the previous one's event (out-of-order queues keep the order),
 * the first for the wait list; the last one's event goes to ev.  Before the
 * first enqueue every kernel is taken from the pool, given all its arguments
 * and its work-group size checked against CL_KERNEL_WORK_GROUP_SIZE, so that
 * every failure of the call's own making happens with nothing enqueued.  What
 * can still fail after the first enqueue is a later clEnqueueNDRangeKernel
 * itself (the driver out of resources or host memory); callers say what
 * their outputs hold then. */
#define BINV_LAUNCH_SEQ_MAX 4
binv_status binv_kernel_launch_seq(binv_context *ctx, cl_command_queue q, cl_program prog, int n,
                                   const binv_launch *l, cl_uint nwait, const cl_event *wait,
                                   cl_event *ev);
/* Locks and returns a scratch buffer of at least `bytes` for `queue`.  On
 * success *ws must be passed to binv_workspace_release after the last enqueue
 * that uses it.  Out-of-order queues get a private buffer each call. */
binv_status binv_workspace_acquire(binv_context *ctx, cl_command_queue queue, size_t bytes,
                                   binv_workspace **ws, cl_mem *buffer);
void binv_workspace_release(binv_context *ctx, binv_workspace *ws, cl_mem buffer);
/* A buffer of at least `count` uint arrival counters for one-launch split-K,
 * held with ws (in-order queues only: ws != NULL).  New counters are zeroed
 * by a fill enqueued on ws's queue; every kernel that uses them leaves them 0. */
binv_status binv_workspace_counters(binv_context *ctx, binv_workspace *ws, size_t count,
                                    cl_mem *counters);
void binv_program_destroy_all(binv_context *ctx);

/* gemm_native.c -------------------------------------------------------- */
/* binv_gemm on the native path (ctx->path == BINV_PATH_NATIVE) for 16-bit
 * dtypes in the LLM layout (A NO_TRANS, B TRANS), after binv_gemm's
 * validation and its quick return for m or n == 0. */
binv_status binv_gemm_native(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                             size_t m, size_t n, size_t k, float alpha, cl_mem a,
                             size_t a_offset, size_t lda, cl_mem b, size_t b_offset, size_t ldb,
                             float beta, cl_mem c, size_t c_offset, size_t ldc,
                             cl_uint num_events, const cl_event *wait_list, cl_event *event);

/* attention.c ---------------------------------------------------------- */
void binv_attention_destroy_all(binv_context *ctx);

/* program_cache.c ------------------------------------------------------ */
/* On-disk program-binary cache.  Any problem means "not cached": the caller
 * compiles from source.  Loads hand out a binary only from a directory and
 * entry owned by this user and writable by nobody else, whose header (key,
 * length, SHA-256) matches; a refused entry is removed.  Stores write a 0600
 * temporary file and rename it (program_cache.c says what is trusted). */
int binv_cache_load(const binv_context *ctx, const char *key_hex, unsigned char **data,
                    size_t *size);
void binv_cache_store(const binv_context *ctx, const char *key_hex, const unsigned char *data,
                      size_t size);

/* sha256.c ------------------------------------------------------------- */
typedef struct binv_sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} binv_sha256;
void binv_sha256_init(binv_sha256 *s);
void binv_sha256_update(binv_sha256 *s, const void *data, size_t n);
void binv_sha256_final(binv_sha256 *s, unsigned char digest[32]);
/* hex must hold 65 bytes. */
void binv_sha256_hex(const void *data, size_t n, char hex[65]);

/* Embedded kernel sources, generated from the cl directory at build time. */
extern const char binv_cl_common[];
extern const char binv_cl_gemm[];
extern const char binv_cl_rows[];
extern const char binv_cl_rows_backward[];
/* rows.c: the first checks every row op and its backward make, in order
 * (dtype, queue, wait list, cols == 0 with rows, sizes below 2^31). */
binv_status binv_rows_check_shape(binv_context *ctx, const char *fn, cl_command_queue queue,
                                  binv_dtype dtype, size_t rows, size_t cols, cl_uint num_events,
                                  const cl_event *wait_list);
extern const char binv_cl_attention[];
extern const char binv_cl_activation[];
extern const char binv_cl_gemm_native[];
extern const char binv_cl_gemm_native_mma[];
extern const char binv_cl_gemm_native_stream[];
extern const char binv_cl_gemm_native_wg[];

#endif
