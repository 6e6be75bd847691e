/* clblast_probe — runs one CLBlast SGEMM in a process of its own, for
 * test_gemm's comparison with CLBlast.
 *
 * Why a separate process: CLBlast is a baseline, not the library under test,
 * and on some implementations its kernels are wrong (PoCL 5.0) or never finish
 * (PoCL 6.0 with the cbs work-group method: worker threads spin forever).  A
 * hang inside an OpenCL call cannot be interrupted in-process, and fork()
 * after OpenCL start-up is unsafe (the driver's threads are not copied), so
 * the test writes the problem to a file, execs this program under a
 * deadline, and judges what comes back.
 *
 * Usage: clblast_probe IN OUT.  IN: the problem (see tests/clblast_probe.h);
 * OUT: C after C = alpha*op(A)*op(B) + beta*C, m * ldc floats.  The device is
 * BINV_TEST_DEVICE's, as for the suites.  Exit status 0: OUT written; 2: bad
 * input file; 3: no device; 4: CLBlast returned an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "clblast_probe.h"

static int read_all(FILE *f, void *dst, size_t n) { return fread(dst, 1, n, f) == n ? 0 : -1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: clblast_probe IN OUT\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    clblast_probe_header h;
    float *a = NULL, *b = NULL, *c = NULL;
    int rc = 2;
    if (read_all(f, &h, sizeof h) || h.magic != CLBLAST_PROBE_MAGIC ||
        h.a_elems > CLBLAST_PROBE_MAX_ELEMS || h.b_elems > CLBLAST_PROBE_MAX_ELEMS ||
        h.c_elems > CLBLAST_PROBE_MAX_ELEMS)
        goto out;
    a = malloc(h.a_elems * sizeof *a + 1);
    b = malloc(h.b_elems * sizeof *b + 1);
    c = malloc(h.c_elems * sizeof *c + 1);
    if (!a || !b || !c || read_all(f, a, h.a_elems * sizeof *a) ||
        read_all(f, b, h.b_elems * sizeof *b) || read_all(f, c, h.c_elems * sizeof *c))
        goto out;

    const char *want = getenv("BINV_TEST_DEVICE");
    hx_device dev;
    if (hx_device_open(want && *want ? want : "0:0", &dev) != 0) {
        rc = 3;
        goto out;
    }
    cl_int err = CL_SUCCESS;
    cl_mem da = clCreateBuffer(dev.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               h.a_elems * sizeof *a, a, &err);
    cl_mem db = clCreateBuffer(dev.context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               h.b_elems * sizeof *b, b, &err);
    cl_mem dc = clCreateBuffer(dev.context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               h.c_elems * sizeof *c, c, &err);
    rc = 4;
    if (da && db && dc) {
        /* The harness's gemm description makes the CLBlast call. */
        const hx_gemm g = {BINV_DTYPE_F32, h.ta ? BINV_TRANS : BINV_NO_TRANS,
                           h.tb ? BINV_TRANS : BINV_NO_TRANS, h.m, h.n, h.k, h.lda, h.ldb, h.ldc,
                           h.alpha, h.beta};
        cl_command_queue q = dev.queue;
        const int s = hx_gemm_clblast(&q, &g, da, 0, db, 0, dc, 0);
        if (s != 0) {
            fprintf(stderr, "clblast_probe: CLBlastSgemm returned %d\n", s);
        } else if (clEnqueueReadBuffer(q, dc, CL_TRUE, 0, h.c_elems * sizeof *c, c, 0, NULL,
                                       NULL) == CL_SUCCESS) {
            FILE *o = fopen(argv[2], "wb");
            if (o && fwrite(c, sizeof *c, h.c_elems, o) == h.c_elems && fclose(o) == 0) rc = 0;
            else if (o) fclose(o);
        }
    }
    if (da) clReleaseMemObject(da);
    if (db) clReleaseMemObject(db);
    if (dc) clReleaseMemObject(dc);
    hx_device_close(&dev);
out:
    fclose(f);
    free(a);
    free(b);
    free(c);
    return rc;
}
