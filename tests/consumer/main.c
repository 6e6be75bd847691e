/* Out-of-tree consumer of an installed libbinv-cl: creates an OpenCL context on
 * the first device of the first platform, runs one small binv_gemm with
 * small-integer inputs (so every result is exact) and checks it.  Prints OK and
 * returns 0 on success; prints why and returns 1 on any failure, including
 * when there is no OpenCL device. */
#include <stdio.h>
#include <string.h>

#include <binv/binv.h>

#define M 2
#define N 3
#define K 4

static int fail(const char *what, int code) {
    fprintf(stderr, "binv-consumer: FAILED: %s (%d)\n", what, code);
    return 1;
}

int main(void) {
    /* A is M x K, B is K x N, row-major, no transposes. */
    static const float a[M * K] = {1, 2, 3, 4,
                                   5, 6, 7, 8};
    static const float b[K * N] = {1, 0, 2,
                                   0, 1, 3,
                                   1, 1, 1,
                                   2, 0, -1};
    static const float want[M * N] = {12, 5, 7,
                                      28, 13, 27};
    float c[M * N];
    for (int i = 0; i < M * N; i++) c[i] = -999.0f;

    if (strcmp(binv_version_string(), BINV_VERSION_STRING) != 0) {
        fprintf(stderr, "binv-consumer: FAILED: header version %s, library version %s\n",
                BINV_VERSION_STRING, binv_version_string());
        return 1;
    }

    cl_platform_id platform;
    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(1, &platform, &nplat);
    if (err != CL_SUCCESS || nplat == 0) return fail("no OpenCL platform (clGetPlatformIDs)", err);
    cl_device_id device;
    cl_uint ndev = 0;
    err = clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, &ndev);
    if (err != CL_SUCCESS || ndev == 0) return fail("no OpenCL device (clGetDeviceIDs)", err);
    char name[256] = "";
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name, name, NULL);

    cl_context clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    if (!clctx) return fail("clCreateContext", err);
    cl_command_queue queue = clCreateCommandQueue(clctx, device, 0, &err);
    if (!queue) return fail("clCreateCommandQueue", err);
    cl_mem da = clCreateBuffer(clctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof a,
                               (void *)a, &err);
    if (!da) return fail("clCreateBuffer(A)", err);
    cl_mem db = clCreateBuffer(clctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof b,
                               (void *)b, &err);
    if (!db) return fail("clCreateBuffer(B)", err);
    cl_mem dc = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof c, c, &err);
    if (!dc) return fail("clCreateBuffer(C)", err);

    binv_context *ctx = NULL;
    binv_status st = binv_context_create(clctx, device, NULL, &ctx);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "binv-consumer: FAILED: binv_context_create: %s: %s\n",
                binv_status_string(st), binv_context_last_error(ctx));
        return 1;
    }
    st = binv_gemm(ctx, queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, M, N, K, 1.0f,
                   da, 0, K, db, 0, N, 0.0f, dc, 0, N, 0, NULL, NULL);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "binv-consumer: FAILED: binv_gemm: %s: %s\n", binv_status_string(st),
                binv_context_last_error(ctx));
        return 1;
    }
    err = clEnqueueReadBuffer(queue, dc, CL_TRUE, 0, sizeof c, c, 0, NULL, NULL);
    if (err != CL_SUCCESS) return fail("clEnqueueReadBuffer(C)", err);

    int bad = 0;
    for (int i = 0; i < M * N; i++) {
        if (c[i] != want[i]) {
            fprintf(stderr, "binv-consumer: C[%d][%d] = %g, want %g\n", i / N, i % N, c[i],
                    want[i]);
            bad = 1;
        }
    }

    binv_context_destroy(ctx);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    clReleaseCommandQueue(queue);
    clReleaseContext(clctx);
    if (bad) return fail("wrong GEMM result", 0);
    printf("binv-consumer: libbinv-cl %s on '%s': OK\n", binv_version_string(), name);
    return 0;
}
