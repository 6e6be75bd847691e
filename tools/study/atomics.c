/* Run-to-run nondeterminism, a different thing from batch variance: a float
 * sum by atomic compare-and-swap (a kernel of this file, not of the library)
 * run R times on the same input, against binv_row_sum of the same data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "study_tool.h"

/* ---- Run-to-run nondeterminism: float atomics ------------------------------ */

/* The usual float atomic add of OpenCL 1.2, which has none: a compare-and-
 * swap loop on the float's bits.  Each work-group first sums its 64 values
 * with a fixed local tree (deterministic), then adds its partial to one
 * global total with the CAS loop, as real reductions do; the order in which
 * the work-groups' additions land, and so the rounding, varies from run to
 * run.  (One atomic per element would serialise a GPU on one address.) */
static const char ATOMIC_SRC[] =
    "__kernel void atomic_sum(__global const float *x, uint n, volatile __global uint *acc) {\n"
    "    __local float s[64];\n"
    "    const uint i = get_global_id(0), l = get_local_id(0);\n"
    "    s[l] = i < n ? x[i] : 0.0f;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (uint h = 32; h > 0; h >>= 1) {\n"
    "        if (l < h) s[l] = s[l] + s[l + h];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (l != 0) return;\n"
    "    const float v = s[0];\n"
    "    uint old = *acc, seen;\n"
    "    do {\n"
    "        seen = old;\n"
    "        old = atomic_cmpxchg(acc, seen, as_uint(as_float(seen) + v));\n"
    "    } while (old != seen);\n"
    "}\n";

/* The device objects of the atomics family: the CAS kernel, the vector x,
 * the kernel's accumulator and binv_row_sum's output. */
typedef struct atomics_rig {
    cl_kernel kern;
    cl_mem x, acc, out;
    size_t n, lws, gws;
} atomics_rig;

/* One run of method m (0: the CAS kernel, 1: binv_row_sum invariant, 2:
 * adaptive): its result in *v. */
static int atomic_once(study *s, const atomics_rig *a, int m, float *v) {
    cl_command_queue q = s->dev.queue;
    if (m == 0) {
        const cl_uint zero = 0; /* the bits of +0.0f */
        cl_int err =
            clEnqueueWriteBuffer(q, a->acc, CL_FALSE, 0, sizeof zero, &zero, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueNDRangeKernel(q, a->kern, 1, NULL, &a->gws, &a->lws, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueReadBuffer(q, a->acc, CL_TRUE, 0, sizeof *v, v, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            fprintf(stderr, "error: atomic_sum: %d\n", (int)err);
            return -1;
        }
        return 0;
    }
    binv_context *ctx = m == 1 ? s->inv : s->adapt;
    const hx_rows p = {.op = HX_ROW_SUM, .dt = BINV_DTYPE_F32, .rows = 1, .cols = a->n,
                       .x = a->x, .ldx = a->n, .y = a->out};
    if (binv_failed(ctx, hx_rows_binv(ctx, q, &p, NULL), "binv_row_sum")) return -1;
    clEnqueueReadBuffer(q, a->out, CL_TRUE, 0, sizeof *v, v, 0, NULL, NULL);
    return 0;
}

int atomics_run(study *s, const options *o, FILE *csv) {
    const size_t n = o->atomic_n;
    const int R = o->atomic_repeats;
    cl_int err;
    int rc = -1;
    float *hx = malloc(n * sizeof *hx);
    atomics_rig rig = {.n = n, .lws = 64, .gws = (n + 63) / 64 * 64};
    cl_program prog = NULL;
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        free(s->atom[m].values);
        s->atom[m].values = calloc((size_t)R, sizeof(float));
        if (!s->atom[m].values) goto out;
    }
    if (!hx) goto out;
    s->atom[0].name = "atomic_cmpxchg float add";
    s->atom[1].name = "binv_row_sum (invariant)";
    s->atom[2].name = "binv_row_sum (adaptive)";
    fill(BINV_DTYPE_F32, hx, n, 21, 1.0f, 0.0f);
    s->atom_ref = hx_sum_ref(hx, n);
    s->atom_n = n;
    s->atom_repeats = R;
    printf("\nRun-to-run: sum of %zu floats, %d runs on the same input\n", n, R);
    const char *src = ATOMIC_SRC;
    prog = clCreateProgramWithSource(s->dev.context, 1, &src, NULL, &err);
    if (err == CL_SUCCESS) err = clBuildProgram(prog, 1, &s->dev.device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        if (prog)
            clGetProgramBuildInfo(prog, s->dev.device, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        fprintf(stderr, "error: building the atomics kernel: %d\n%s\n", (int)err, log);
        goto out;
    }
    rig.kern = clCreateKernel(prog, "atomic_sum", &err);
    rig.x = buffer(s, n * sizeof(float), hx);
    rig.acc = buffer(s, sizeof(cl_uint), NULL);
    rig.out = buffer(s, sizeof(float), NULL);
    if (err != CL_SUCCESS || !rig.x || !rig.acc || !rig.out) goto out;
    cl_uint un = (cl_uint)n;
    clSetKernelArg(rig.kern, 0, sizeof rig.x, &rig.x);
    clSetKernelArg(rig.kern, 1, sizeof un, &un);
    clSetKernelArg(rig.kern, 2, sizeof rig.acc, &rig.acc);
    if (csv) fprintf(csv, "method,run,value,diff_from_ref\n");
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        hx_hashset seen = {0};
        double t0 = 0;
        /* Run -1 warms up (builds the kernels) and is not counted. */
        for (int r = -1; r < R; r++) {
            float v = 0.0f;
            if (r == 0) t0 = hx_now_s();
            if (s->tty) {
                fprintf(stderr, "\r\033[K%s: run %d/%d", s->atom[m].name, r + 1, R);
                fflush(stderr);
            }
            if (atomic_once(s, &rig, m, &v)) {
                hx_hashset_free(&seen);
                goto out;
            }
            if (r < 0) continue;
            s->atom[m].values[r] = v;
            hx_hashset_add(&seen, &v, sizeof v);
            if (csv)
                fprintf(csv, "%s,%d,%.9g,%.9g\n", s->atom[m].name, r, (double)v,
                        (double)v - s->atom_ref);
        }
        s->atom[m].ms = (hx_now_s() - t0) / R * 1e3; /* includes the read back */
        s->atom[m].distinct = seen.count;
        hx_hashset_free(&seen);
        if (s->tty) fprintf(stderr, "\r\033[K");
        float lo = s->atom[m].values[0], hi = lo;
        for (int r = 1; r < R; r++) {
            if (s->atom[m].values[r] < lo) lo = s->atom[m].values[r];
            if (s->atom[m].values[r] > hi) hi = s->atom[m].values[r];
        }
        printf("  %-26s distinct results %3d of %d   range [%.9g, %.9g]   %8.3f ms/run\n",
               s->atom[m].name, s->atom[m].distinct, R, (double)lo, (double)hi, s->atom[m].ms);
    }
    printf("  reference (compensated f64): %.9g\n", s->atom_ref);
    s->atom_ran = 1;
    rc = 0;
out:
    if (rig.kern) clReleaseKernel(rig.kern);
    if (prog) clReleaseProgram(prog);
    release(&rig.x);
    release(&rig.acc);
    release(&rig.out);
    free(hx);
    return rc;
}

void atomics_report(FILE *f, const study *s, const options *o) {
    const int ad = s->atom[0].distinct; /* the CAS sum's distinct results */
    fprintf(f, "## Run-to-run nondeterminism: float atomics\n\n"
               "A different effect from batch variance: the *same* call on the *same* input "
               "giving different bits from one run to the next. The usual way to sum into one "
               "float in OpenCL 1.2 (which has no float atomic add) is a compare-and-swap loop on "
               "the float's bits (`atomic_cmpxchg` on `volatile __global uint *`, a kernel defined "
               "in binv-study, not in the library); every work-item adds its element to one "
               "total. The additions happen in the order the swaps land, which depends on "
               "scheduling and timing, so the rounding can differ run to run. Below: the sum of "
               "%zu uniform(-1, 1) floats, %d runs each, against binv_row_sum of the same vector "
               "(rows = 1, cols = %zu) in both schedules. Reference: compensated f64 sum "
               "%.9g.\n\n",
            s->atom_n, s->atom_repeats, s->atom_n, s->atom_ref);
    fprintf(f, "| method | runs | distinct results | min | max | max − min | max \\|result − "
               "reference\\| | ms/run |\n"
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int m = 0; m < ATOMIC_METHODS; m++) {
        const atomic_method *a = &s->atom[m];
        float lo = a->values[0], hi = lo;
        double err = 0;
        for (int r = 0; r < s->atom_repeats; r++) {
            if (a->values[r] < lo) lo = a->values[r];
            if (a->values[r] > hi) hi = a->values[r];
            double e = fabs((double)a->values[r] - s->atom_ref);
            if (e > err) err = e;
        }
        fprintf(f, "| %s | %d | %s%d%s | %.9g | %.9g | %.3g | %.3g | %.3f |\n", a->name,
                s->atom_repeats, a->distinct > 1 ? "**" : "", a->distinct,
                a->distinct > 1 ? "**" : "", (double)lo, (double)hi, (double)hi - (double)lo, err,
                a->ms);
    }
    fprintf(f, "\n**Measured on this device:** the atomic sum gave %d distinct result%s in %d "
               "runs%s; binv_row_sum gave %d (invariant) and %d (adaptive). ",
            ad, ad == 1 ? "" : "s", s->atom_repeats,
            ad == 1 ? " — here the order of the swaps happened to repeat (few threads picking "
                      "work-groups in a repeatable order); it is not guaranteed, and on a GPU "
                      "thousands of work-items race for the same word"
                    : "",
            s->atom[1].distinct, s->atom[2].distinct);
    fprintf(f, "Every binv reduction, adaptive included, has a fixed order for a given call: the "
               "adaptive schedule varies with the *batch* (previous sections), never from run "
               "to run; the invariant one varies with neither. Per run: `atomics.csv`. Plot: "
               "`atomics.png` (result − reference per run).\n\n![atomics](atomics.png)\n\n");
}

void atomics_plot(FILE *g, const study *s, const options *o) {
    fprintf(g, "set terminal pngcairo size 900,520 noenhanced\nset output '%s/atomics.png'\n"
               "unset logscale\nset grid\nset key outside right\nset title 'Sum of %zu floats, "
               "%d runs on the same input: result - reference'\n"
               "set xlabel 'run'\nset ylabel 'result - f64 reference'\nset xrange [-1:%d]\n",
            o->out, s->atom_n, s->atom_repeats, s->atom_repeats);
    static const char *color[] = {"#ff7f0e", "#1f77b4", "#d62728"};
    static const int pt[] = {7, 5, 9};
    fprintf(g, "plot ");
    for (int m = 0; m < ATOMIC_METHODS; m++)
        fprintf(g, "%s'%s/atomics.csv' using (strcol(1) eq '%s' ? $2 : 1/0):4 with linespoints "
                   "lc rgb '%s' pt %d ps 1.3 title '%s'",
                m ? ", \\\n     " : "", o->out, s->atom[m].name, color[m], pt[m], s->atom[m].name);
    fprintf(g, "\nset xrange [*:*]\n");
}
