/* native_check: exactness check of the native path on small integer inputs
 * (every product and sum exact in f32), printing the first mismatches with
 * their coordinates -- a diagnostic for fragment and layout bugs.
 *   build (repo root, after the library):
 *     gcc -O1 experiments/native_check.c -Iinclude -Lbuild -lbinv-cl -lOpenCL -o native_check
 *   usage: LD_LIBRARY_PATH=build ./native_check [m n k]...   (default: a few shapes)
 * Shapes of the large-m kernel can be forced with BINV_NATIVE_WG (docs/schedules.md). */
#include <binv/binv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned short bf16(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return (unsigned short)(u >> 16); /* exact for small integers */
}
static float f32(unsigned short h) {
    unsigned u = (unsigned)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int check(cl_context c, cl_command_queue q, binv_context *b, size_t m, size_t n, size_t k) {
    unsigned short *A = malloc(m * k * 2), *W = malloc(n * k * 2), *C = malloc(m * n * 2);
    for (size_t i = 0; i < m * k; i++) A[i] = bf16((float)((int)((i * 7 + 3) % 5) - 2));
    for (size_t i = 0; i < n * k; i++) W[i] = bf16((float)((int)((i * 11 + 1) % 3) - 1));
    cl_int e;
    cl_mem a = clCreateBuffer(c, CL_MEM_COPY_HOST_PTR, m * k * 2, A, &e);
    cl_mem w = clCreateBuffer(c, CL_MEM_COPY_HOST_PTR, n * k * 2, W, &e);
    cl_mem o = clCreateBuffer(c, CL_MEM_READ_WRITE, m * n * 2, NULL, &e);
    int st = binv_gemm(b, q, BINV_DTYPE_BF16, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f, a, 0, k, w,
                       0, k, 0.0f, o, 0, n, 0, NULL, NULL);
    if (st) printf("m=%zu n=%zu k=%zu: status %d: %s\n", m, n, k, st, binv_context_last_error(b));
    clEnqueueReadBuffer(q, o, CL_TRUE, 0, m * n * 2, C, 0, NULL, NULL);
    size_t bad = 0;
    for (size_t i = 0; i < m && !st; i++)
        for (size_t j = 0; j < n; j++) {
            float s = 0;
            for (size_t p = 0; p < k; p++) s += f32(A[i * k + p]) * f32(W[j * k + p]);
            float got = f32(C[i * n + j]), want = f32(bf16(s));
            if (got != want && bad++ < 8)
                printf("  C[%zu][%zu] = %g, want %g\n", i, j, got, want);
        }
    printf("m=%zu n=%zu k=%zu: %zu of %zu wrong\n", m, n, k, bad, m * n);
    clReleaseMemObject(a); clReleaseMemObject(w); clReleaseMemObject(o);
    free(A); free(W); free(C);
    return st || bad;
}

int main(int argc, char **argv) {
    cl_platform_id p[8];
    cl_uint np = 0;
    clGetPlatformIDs(8, p, &np);
    cl_device_id d = NULL;
    for (cl_uint i = 0; i < np && !d; i++)
        if (clGetDeviceIDs(p[i], CL_DEVICE_TYPE_GPU, 1, &d, NULL) != CL_SUCCESS) d = NULL;
    if (!d) return printf("no GPU\n"), 1;
    cl_int e;
    cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &e);
    cl_command_queue q = clCreateCommandQueue(c, d, 0, &e);
    binv_options o = {sizeof o, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_NATIVE};
    binv_context *b;
    if (binv_context_create(c, d, &o, &b)) return printf("context failed\n"), 1;
    int bad = 0;
    if (argc >= 4)
        for (int i = 1; i + 2 < argc; i += 3)
            bad |= check(c, q, b, strtoul(argv[i], 0, 10), strtoul(argv[i + 1], 0, 10),
                         strtoul(argv[i + 2], 0, 10));
    else {
        static const size_t s[][3] = {{128, 128, 32}, {128, 128, 64}, {256, 256, 512},
                                      {300, 200, 1000}, {100, 130, 72}};
        for (size_t i = 0; i < sizeof s / sizeof *s; i++) bad |= check(c, q, b, s[i][0], s[i][1], s[i][2]);
    }
    binv_context_destroy(b);
    return bad;
}
