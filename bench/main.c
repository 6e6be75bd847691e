/* binv-bench — throughput of libbinv-cl, with a batch-invariance check.
 *
 * GEMM (--op gemm, the default), next to CLBlast, in the LLM layout:
 *
 *   C[m, n] = A[m, k] * W[n, k]^T     (A row-major NO_TRANS, W = BINV_TRANS)
 *
 * For every (implementation, dtype, m, n, k) it reports the time of one call,
 * GFLOP/s (2mnk), the operand bandwidth (bytes of A + W + C over the time),
 * that bandwidth as a fraction of the device copy bandwidth measured at the
 * start of the same run, and the speed relative to CLBlast.  Row 0 of A holds
 * the same data for every m; the bit pattern of row 0 of C is kept for every
 * m and a summary at the end says whether it stayed the same (it must for
 * binv-invariant; binv-adaptive and CLBlast need not).
 *
 * Row reductions (--op rows): rmsnorm, softmax, log_softmax, layernorm,
 * add_rmsnorm, row_sum, row_mean for every (dtype, cols, op, rows, schedule):
 * time per call, bytes moved, GB/s, fraction of the copy bandwidth, the
 * adaptive/invariant time ratio, an accuracy check of rows 0 and rows-1
 * against a double-precision reference, and whether row 0 of the output kept
 * its bits over every row count (row 0 of x is the same in every batch).
 *
 * Attention (--op attention): decode steps (batch x context, one new token
 * per sequence) and a one-sequence prefill over the paged KV cache, 32 query
 * heads / 8 KV heads / head_dim 128: time per binv_attention call, KV bytes
 * read per second as a fraction of the copy bandwidth (decode), TFLOP/s
 * (prefill: 4 * heads * head_dim * P(P+1)/2), adaptive vs invariant.
 *
 * `binv-bench --help` lists the options.  Files: options.c (command line),
 * timing.c (how a call is timed, copy bandwidth), gemm.c, rows.c,
 * attention.c (one family each, on the harness's op descriptions),
 * report.c (CSV, summaries, plots), util.c. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const char *const impl_names[IMPL_COUNT] = {"clblast", "binv-invariant", "binv-adaptive",
                                            "binv-native"};
const char *const sched_names[2] = {"invariant", "adaptive"};

static const char *type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "ACCEL";
    return "OTHER";
}

static int setup_device(bench *b) {
    cl_int err;
    /* hx_device_open prints why it failed. */
    if (hx_device_open(b->opt.device, &b->dev)) return 1;
    cl_device_id dev = b->dev.device;
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof b->compute_units,
                           &b->compute_units, NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)");
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof b->global_mem, &b->global_mem,
                           NULL),
           "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)");
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof b->max_alloc, &b->max_alloc,
                           NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)");
    b->is_gpu = (b->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    b->has_fp16 = hx_device_has_ext(dev, "cl_khr_fp16");
    b->reps = b->opt.reps ? b->opt.reps : (b->is_gpu ? 20 : 3);
    /* hx_device's queue records profiling timestamps; the timing here is wall
     * clock, so a plain queue keeps that cost out of the numbers. */
    b->queue = clCreateCommandQueue(b->dev.context, dev, 0, &err);
    CL_TRY(err, "clCreateCommandQueue");

    for (int s = 0; s < 2; s++) {
        if (!(s == SCHED_INVARIANT ? b->opt.run_invariant : b->opt.run_adaptive)) continue;
        binv_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.schedule = s == SCHED_INVARIANT ? BINV_SCHEDULE_INVARIANT : BINV_SCHEDULE_ADAPTIVE;
        binv_status st = binv_context_create(b->dev.context, dev, &o, &b->binv[s]);
        if (st != BINV_SUCCESS)
            /* No context exists to ask binv_context_last_error(): the
             * library logs the detailed reason to stderr with BINV_DEBUG. */
            return fail("binv_context_create(%s) on '%s' failed: %s (%d); rerun with "
                        "BINV_DEBUG=1 for the library's detailed message",
                        sched_names[s], b->dev.name, binv_status_string(st), st);
    }

    /* The native tensor-core path, where the device has it (its GEMM; the
     * decode steps use it through the engine). */
    if (b->opt.run_invariant && (b->opt.run & (RUN_GEMM | RUN_DECODE))) {
        binv_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.path = BINV_PATH_NATIVE;
        if (binv_context_create(b->dev.context, dev, &o, &b->binv[SCHED_NATIVE]) == BINV_SUCCESS &&
            binv_context_path(b->binv[SCHED_NATIVE]) != BINV_PATH_NATIVE) {
            printf("binv-native: %s\n", binv_context_last_error(b->binv[SCHED_NATIVE]));
            binv_context_destroy(b->binv[SCHED_NATIVE]);
            b->binv[SCHED_NATIVE] = NULL;
        }
    }

    printf("binv-bench %s: device '%s' (%s, platform '%s'), %u compute units, %.1f GiB, "
           "cl_khr_fp16 %s\n",
           binv_version_string(), b->dev.name, type_name(b->dev.type), b->dev.platform_name,
           b->compute_units, (double)b->global_mem / (1024.0 * 1024.0 * 1024.0),
           b->has_fp16 ? "yes" : "no");
    if (b->opt.run & RUN_GEMM) {
        if (hx_have_clblast())
            printf("CLBlast: compiled in (SGEMM; HGEMM only with cl_khr_fp16; no bf16)\n");
        else
            printf("CLBlast: not compiled in (no clblast column)\n");
    }
    const char *env[] = {"BINV_GEMM_PATH", "BINV_GEMM_TILE", "BINV_ROWS_PATH", "BINV_ATTN_PATH",
                         "BINV_DEBUG"};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        const char *v = getenv(env[i]);
        if (v && *v) printf("note: %s=%s is set\n", env[i], v);
    }
    printf("timing: median of %d reps of a batch of calls (wall clock, one clFinish per batch)\n",
           b->reps);
    return 0;
}

static void teardown(bench *b) {
    free_shape(b);
    free_rows_shape(b);
    for (int s = 0; s < 2; s++) hx_hashset_free(&b->rpat[s]);
    /* CLBlast caches programs built for this context: drop them first. */
    hx_clblast_clear_cache();
    for (int s = 0; s < 3; s++) binv_context_destroy(b->binv[s]);
    if (b->queue) clReleaseCommandQueue(b->queue);
    hx_device_close(&b->dev);
    if (b->csv) fclose(b->csv);
    if (b->rows_csv) fclose(b->rows_csv);
    free(b->res);
    free(b->inv);
    free(b->rres);
    free(b->rinv);
}

int main(int argc, char **argv) {
    bench b;
    memset(&b, 0, sizeof b);
    int prc = parse_args(argc, argv, &b.opt);
    if (prc == 2) return 0;
    if (prc) {
        fprintf(stderr, "binv-bench: see --help\n");
        return 1;
    }
    if (b.opt.list) {
        hx_device_list(stdout);
        return 0;
    }
    int rc = setup_device(&b);
    if (!rc) rc = measure_copy_bandwidth(&b);
    if (!rc && (b.opt.run & RUN_GEMM)) rc = run_gemm(&b);
    if (!rc && (b.opt.run & RUN_ROWS)) rc = run_rows(&b);
    if (!rc && (b.opt.run & RUN_ATTN)) rc = run_attention(&b);
    if (!rc && (b.opt.run & RUN_DECODE)) rc = run_decode(&b);
    if (!rc && b.any_bad)
        rc = fail("some results are wrong (check = BAD above: error relative to the term "
                  "magnitudes beyond the tolerance)");
    teardown(&b);
    return rc ? 1 : 0;
}
