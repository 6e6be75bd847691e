/* binv-bench's clock: how a configuration is timed, and the yardsticks
 * (device copy bandwidth, launch floor) measured at the start of a run. */
#include <math.h>
#include <stdlib.h>

#include "bench.h"

/* Times one configuration.  Wall clock around a batch of back-to-back calls
 * closed by one clFinish, divided by the batch size; median over reps.
 * Not profiling events: binv_gemm may enqueue two kernels (split-K partials,
 * then the ordered reduction), the row reductions up to three, and each
 * returns an event for the last only; CLBlast may add transpose/pad kernels;
 * so events would miss work.  The batch amortises the clFinish round trip the
 * way a pipelined inference loop does; host-side cost per call (argument
 * checks, launches) is included, as it is for a real caller.  Calls rotate
 * through the copies of the inputs.  host_ms (if not NULL) receives the
 * median time the host spent issuing a call (the batch before its clFinish):
 * when it is close to *ms, the host, not the device, sets the pace. */
int time_calls(bench *b, bench_call call, const void *cfg, double *ms, int *inner_out,
                      double *host_ms) {
    /* Warm-up: the first calls build programs (binv's lazily, CLBlast's per
     * kernel variant) and wake the device up; >= 3 calls and >= 50 ms (at
     * most 100 calls), none timed. */
    double w0 = hx_now_s();
    for (int i = 0; i < 100; i++) {
        if (call(b, cfg, b->rot++)) return 1;
        CL_TRY(clFinish(b->queue), "clFinish");
        if (i >= 2 && hx_now_s() - w0 >= 0.050) break;
    }
    /* Calibrate: batches of >= ~2 ms on a GPU (>= ~20 ms on a CPU, whose
     * thread wake-ups are noisier), at most 200 calls. */
    double t0 = hx_now_s();
    if (call(b, cfg, b->rot++)) return 1;
    CL_TRY(clFinish(b->queue), "clFinish");
    double one = hx_now_s() - t0, target = b->is_gpu ? 0.002 : 0.020;
    int inner = one > 0 && one < target ? (int)ceil(target / one) : 1;
    if (inner > 200) inner = 200;
    double *times = calloc(2 * (size_t)b->reps, sizeof *times), *host = times + b->reps;
    if (!times) return fail("out of host memory");
    for (int r = 0; r < b->reps; r++) {
        t0 = hx_now_s();
        for (int i = 0; i < inner; i++)
            if (call(b, cfg, b->rot++)) {
                free(times);
                return 1;
            }
        host[r] = (hx_now_s() - t0) / inner;
        cl_int err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
            free(times);
            return fail("clFinish failed: OpenCL error %d", (int)err);
        }
        times[r] = (hx_now_s() - t0) / inner;
    }
    *ms = 1e3 * median(times, b->reps);
    if (host_ms) *host_ms = 1e3 * median(host, b->reps);
    *inner_out = inner;
    free(times);
    return 0;
}

/* One float4 per work-item: the plainest streaming kernel, as a yardstick. */
static const char copy_source[] =
    "__kernel void binv_bench_copy(__global const float4 *restrict src,\n"
    "                              __global float4 *restrict dst) {\n"
    "    size_t i = get_global_id(0);\n"
    "    dst[i] = src[i];\n"
    "}\n";

/* One launch of the copy kernel on a single work-group of 32 (the yardstick
 * for the per-call floor of small shapes). */
static int tiny_launch(bench *b, const void *cfg, unsigned long slot) {
    const size_t gws = 32;
    (void)slot;
    CL_TRY(clEnqueueNDRangeKernel(b->queue, *(const cl_kernel *)cfg, 1, NULL, &gws, NULL, 0, NULL,
                                  NULL),
           "clEnqueueNDRangeKernel(copy)");
    return 0;
}

/* Builds the copy kernel; on failure, what was made is left in *prog for
 * the caller to release. */
static int build_copy_kernel(bench *b, cl_program *prog, cl_kernel *kern) {
    cl_int err;
    const char *srcs[1] = {copy_source};
    *prog = clCreateProgramWithSource(b->dev.context, 1, srcs, NULL, &err);
    if (err != CL_SUCCESS) return fail("clCreateProgramWithSource(copy) failed: %d", (int)err);
    err = clBuildProgram(*prog, 1, &b->dev.device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(*prog, b->dev.device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              NULL);
        return fail("building the copy kernel failed: %d\n%s", (int)err, log);
    }
    *kern = clCreateKernel(*prog, "binv_bench_copy", &err);
    if (err != CL_SUCCESS) return fail("clCreateKernel(copy) failed: %d", (int)err);
    return 0;
}

/* Copy bandwidth = (bytes read + bytes written) / time, the same convention
 * as the GEMM operand bandwidth and the rows' bytes moved.  A 512 MiB buffer
 * on a GPU (1 GiB of traffic per copy, far beyond any L2), 128 MiB on a CPU
 * or with --quick; median of several repetitions of a timed batch of copies. */
int measure_copy_bandwidth(bench *b) {
    size_t bytes = (b->is_gpu && !b->opt.quick) ? (size_t)512 << 20 : (size_t)128 << 20;
    while (bytes > b->max_alloc || 2 * (cl_ulong)bytes > b->global_mem / 2) bytes /= 2;
    bytes &= ~(size_t)15;
    int rc = 0;
    cl_int err;
    cl_program prog = NULL;
    cl_kernel kern = NULL;
    cl_mem src = NULL, dst = NULL;
    double *times = NULL;
    int reps = b->is_gpu ? 10 : 5;

    if ((rc = build_copy_kernel(b, &prog, &kern))) goto done;
    if ((rc = create_buffer(b, bytes, NULL, &src, "copy source")) ||
        (rc = create_buffer(b, bytes, NULL, &dst, "copy destination")))
        goto done;
    const float pattern = 1.25f;
    err = clEnqueueFillBuffer(b->queue, src, &pattern, sizeof pattern, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(b->queue, dst, &pattern, sizeof pattern, 0, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        rc = fail("clEnqueueFillBuffer failed: %d", (int)err);
        goto done;
    }
    err = clSetKernelArg(kern, 0, sizeof src, &src);
    if (err == CL_SUCCESS) err = clSetKernelArg(kern, 1, sizeof dst, &dst);
    if (err != CL_SUCCESS) {
        rc = fail("clSetKernelArg(copy) failed: %d", (int)err);
        goto done;
    }
    size_t gws = bytes / 16;
    /* Warm-up, and a calibration of how many copies make a batch of >= 10 ms
     * on a GPU so that the launch and clFinish latency do not count. */
    double t0 = hx_now_s();
    err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clFinish(b->queue);
    if (err != CL_SUCCESS) {
        rc = fail("copy kernel failed: OpenCL error %d", (int)err);
        goto done;
    }
    double t1 = hx_now_s();
    int inner = 1;
    if (b->is_gpu) {
        double one = t1 - t0;
        inner = one > 0 ? (int)ceil(0.010 / one) : 16;
        if (inner < 1) inner = 1;
        if (inner > 64) inner = 64;
    }
    times = calloc((size_t)reps, sizeof *times);
    if (!times) { rc = fail("out of host memory"); goto done; }
    for (int r = 0; r < reps; r++) {
        t0 = hx_now_s();
        for (int i = 0; i < inner && err == CL_SUCCESS; i++)
            err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
        if (err == CL_SUCCESS) err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
            rc = fail("copy kernel failed: OpenCL error %d", (int)err);
            goto done;
        }
        times[r] = (hx_now_s() - t0) / inner;
    }
    double t = median(times, reps);
    b->copy_gbs = 2.0 * (double)bytes / t * 1e-9;
    printf("copy bandwidth: %.1f GB/s  (float4 copy kernel, %zu MiB -> %zu MiB = %.2f GiB "
           "read+written per copy, median of %d x %d copies)\n",
           b->copy_gbs, bytes >> 20, bytes >> 20, 2.0 * (double)bytes / (1 << 30), reps, inner);
    double ms = 0, host_ms = 0;
    if ((rc = time_calls(b, tiny_launch, &kern, &ms, &inner, &host_ms))) goto done;
    b->launch_us = 1e3 * ms;
    b->launch_host_us = 1e3 * host_ms;
    printf("launch floor: %.2f us per launch of a one-work-group kernel issued back to back, "
           "timed like the calls below (host %.2f us to issue one)\n", b->launch_us,
           b->launch_host_us);
done:
    free(times);
    release_mem(&src);
    release_mem(&dst);
    if (kern) clReleaseKernel(kern);
    if (prog) clReleaseProgram(prog);
    return rc;
}
