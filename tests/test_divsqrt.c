/* Software division and square root (cl/common.cl binv_div, binv_sqrt,
 * binv_rsqrt) against the host's IEEE-754 / and sqrtf, bit for bit (any NaN
 * matches any NaN): special and edge inputs, quotients on subnormal rounding
 * ties, exact quotients, operands whose quotients land near overflow and in
 * the subnormal range, random bit patterns of every exponent.  BINV_DIV and
 * BINV_SQRT (what the kernels use: the driver's / and sqrt on devices with
 * correctly rounded ones, the software ones otherwise) are checked on the same
 * inputs, and sqrt over every input in [1, 4) (every significand).
 * BINV_LONG=1 adds every one of the 2^32 sqrt inputs and every divisor
 * significand.
 *
 * The context's device checks (src/context.c query_device) are tested by
 * interposing clGetDeviceInfo in this binary (the library is linked
 * statically, so its calls bind to the definition below): a device reported
 * without CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT gets the software path, one
 * without round-to-nearest is refused, and a transient clGetDeviceInfo failure
 * comes back as its own OpenCL status. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

/* ---- clGetDeviceInfo interposition ------------------------------------ */

static cl_device_info fake_what;  /* query to fake (0: none) */
static cl_int fake_status;        /* CL_SUCCESS: answer fake_fp instead */
static cl_device_fp_config fake_fp;

CL_API_ENTRY cl_int CL_API_CALL clGetDeviceInfo(cl_device_id device, cl_device_info param_name,
                                                size_t param_value_size, void *param_value,
                                                size_t *param_value_size_ret) {
    typedef cl_int (*fn)(cl_device_id, cl_device_info, size_t, void *, size_t *);
    static fn real;
    if (!real) {
        void *p = dlsym(RTLD_NEXT, "clGetDeviceInfo");
        memcpy(&real, &p, sizeof real);
        if (!real) return CL_INVALID_DEVICE;
    }
    if (fake_what && param_name == fake_what) {
        if (fake_status != CL_SUCCESS) return fake_status;
        if (param_name == CL_DEVICE_SINGLE_FP_CONFIG && param_value_size >= sizeof fake_fp) {
            memcpy(param_value, &fake_fp, sizeof fake_fp);
            if (param_value_size_ret) *param_value_size_ret = sizeof fake_fp;
            return CL_SUCCESS;
        }
    }
    return real(device, param_name, param_value_size, param_value, param_value_size_ret);
}

static binv_status create_with(test_env *env, cl_device_info what, cl_int status,
                               cl_device_fp_config fp, binv_context **c) {
    fake_what = what;
    fake_status = status;
    fake_fp = fp;
    *c = (binv_context *)0x1;
    const binv_status st = binv_context_create(env->context, env->device, NULL, c);
    fake_what = 0;
    return st;
}

/* ---- host references and the device kernels -------------------------- */

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float flt(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static int is_nan(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
static int same(uint32_t got, uint32_t want) {
    return got == want || (is_nan(got) && is_nan(want));
}

static const char *kernel_src =
    "__kernel void t_div(__global const uint *a, __global const uint *b, __global uint *q,\n"
    "                    __global uint *qm) {\n"
    "  const size_t i = get_global_id(0);\n"
    "  const float x = as_float(a[i]), y = as_float(b[i]);\n"
    "  q[i] = as_uint(binv_div(x, y));\n"
    "  qm[i] = as_uint(BINV_DIV(x, y));\n"
    "}\n"
    "__kernel void t_sqrt(__global const uint *a, __global uint *s, __global uint *sm,\n"
    "                     __global uint *rs) {\n"
    "  const size_t i = get_global_id(0);\n"
    "  const float x = as_float(a[i]);\n"
    "  s[i] = as_uint(binv_sqrt(x));\n"
    "  sm[i] = as_uint(BINV_SQRT(x));\n"
    "  rs[i] = as_uint(binv_rsqrt(x));\n"
    "}\n"
    "__kernel void t_sqrt_range(uint base, __global uint *s) {\n"
    "  const uint i = (uint)get_global_id(0);\n"
    "  s[i] = as_uint(binv_sqrt(as_float(base + i)));\n"
    "}\n";

static cl_program program(binv_context *ctx) {
    cl_program p = NULL;
    const binv_status st = binv_program_get(ctx, "divsqrt_test", kernel_src, "-DBINV_DTYPE=1", &p);
    if (st != BINV_SUCCESS) printf("# %s\n", binv_context_last_error(ctx));
    assert_int_equal(st, BINV_SUCCESS);
    return p;
}

static void run_kernel(test_env *env, cl_program prog, const char *name, size_t n, int nin,
                       const uint32_t *const *in, int nout, uint32_t *const *out) {
    cl_int err;
    cl_kernel k = clCreateKernel(prog, name, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem b[6];
    for (int i = 0; i < nin + nout; i++) {
        b[i] = test_buffer(env, n * 4, i < nin ? in[i] : NULL);
        assert_int_equal(clSetKernelArg(k, (cl_uint)i, sizeof b[i], &b[i]), CL_SUCCESS);
    }
    assert_int_equal(clEnqueueNDRangeKernel(env->queue, k, 1, NULL, &n, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    for (int i = 0; i < nout; i++) test_read(env, b[nin + i], n * 4, out[i]);
    for (int i = 0; i < nin + nout; i++) clReleaseMemObject(b[i]);
    clReleaseKernel(k);
}

/* Runs a, b (n pairs) through binv_div and BINV_DIV; returns the mismatches
 * (printing the first few) and adds n to *count. */
static size_t check_div(test_env *env, cl_program prog, const char *what, const uint32_t *a,
                        const uint32_t *b, size_t n, size_t *count) {
    uint32_t *q = malloc(n * 4), *qm = malloc(n * 4);
    assert_non_null(q);
    assert_non_null(qm);
    const uint32_t *in[2] = {a, b};
    uint32_t *out[2] = {q, qm};
    run_kernel(env, prog, "t_div", n, 2, in, 2, out);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const uint32_t want = bits(flt(a[i]) / flt(b[i]));
        if (!same(q[i], want) || !same(qm[i], want)) {
            if (bad++ < 8)
                printf("# %s: %08x / %08x (%a / %a): binv_div %08x, BINV_DIV %08x, IEEE %08x\n",
                       what, a[i], b[i], flt(a[i]), flt(b[i]), q[i], qm[i], want);
        }
    }
    free(q);
    free(qm);
    *count += n;
    return bad;
}

static size_t check_sqrt(test_env *env, cl_program prog, const char *what, const uint32_t *x,
                         size_t n, size_t *count) {
    uint32_t *s = malloc(n * 4), *sm = malloc(n * 4), *rs = malloc(n * 4);
    assert_true(s && sm && rs);
    const uint32_t *in[1] = {x};
    uint32_t *out[3] = {s, sm, rs};
    run_kernel(env, prog, "t_sqrt", n, 1, in, 3, out);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float r = sqrtf(flt(x[i]));
        const uint32_t want = bits(r), want_r = bits(1.0f / r); /* binv_rsqrt: two roundings */
        if (!same(s[i], want) || !same(sm[i], want) || !same(rs[i], want_r)) {
            if (bad++ < 8)
                printf("# %s: sqrt(%08x = %a): binv_sqrt %08x, BINV_SQRT %08x, IEEE %08x; "
                       "binv_rsqrt %08x, 1/sqrtf %08x\n",
                       what, x[i], flt(x[i]), s[i], sm[i], want, rs[i], want_r);
        }
    }
    free(s);
    free(sm);
    free(rs);
    *count += n;
    return bad;
}

/* Special and edge values (both signs are added by the callers). */
static const uint32_t edge[] = {
    0x00000000u, 0x7f800000u, 0x7fc00000u, 0x7f800001u, /* 0, inf, quiet and signalling NaN */
    0x00000001u, 0x00000002u, 0x00000003u, 0x00400000u, 0x00400001u, 0x007fffffu, /* subnormals */
    0x00800000u, 0x00800001u, 0x00ffffffu, 0x01000000u, /* smallest normals */
    0x3f800000u, 0x3f800001u, 0x3f7fffffu, 0x3fffffffu, 0x40000000u, 0x3f000000u, /* 1, 2, .5 */
    0x40400000u, 0x40a00000u, 0x3eaaaaabu, 0x3fb504f3u, 0x3fc00000u, /* 3, 5, 1/3, sqrt2, 1.5 */
    0x4b800000u, 0x34000000u, 0x5f800000u, 0x1f800000u, /* 2^24, 2^-23, 2^64, 2^-64 */
    0x7f000000u, 0x7effffffu, 0x7f7fffffu, 0x7f7ffffeu, /* near the largest finite */
    0x3e800000u, 0x0c000000u, 0x73000000u, 0x7e800000u, 0x01800000u, /* powers of two */
    0x00000100u, 0x00010000u, 0x00200000u, 0x00100000u, /* subnormal powers of two */
    0x3fffff00u, 0x3f800100u, 0x3f8ccccdu, 0x3dcccccdu, 0x4effffffu, /* 1.99.., 1.00.., 1.1, .1 */
    0x00fffffeu, 0x02000001u, 0x7e7fffffu, 0x00c00000u,
};
#define NEDGE (sizeof edge / sizeof *edge)

static int long_mode(void) {
    const char *l = getenv("BINV_LONG");
    return l && *l && strcmp(l, "0") != 0;
}

/* Random float of biased exponent e (0: subnormal) and random sign. */
static uint32_t with_exp(uint64_t *s, int e) {
    const uint64_t r = hx_rng_next(s);
    return (uint32_t)(r & 0x807fffffu) | ((uint32_t)e << 23);
}

/* Over 100 lines on purpose: one walk through the input classes, each a few
 * lines that generate pairs followed by the same check_div; the running count
 * and mismatch total are the test's result. */
static void test_div(void **state) {
    test_env *env = *state;
    cl_program prog = program(env->ctx);
    enum { N = 1 << 20 };
    uint32_t *a = malloc(N * 4), *b = malloc(N * 4);
    assert_true(a && b);
    size_t n, count = 0, bad = 0;
    uint64_t s = 14;

    /* Every pair of edge values, both signs. */
    n = 0;
    for (size_t i = 0; i < 2 * NEDGE; i++)
        for (size_t j = 0; j < 2 * NEDGE; j++) {
            a[n] = edge[i / 2] | (uint32_t)(i & 1) << 31;
            b[n++] = edge[j / 2] | (uint32_t)(j & 1) << 31;
        }
    size_t c = 0;
    bad += check_div(env, prog, "edge pairs", a, b, n, &c);
    printf("# div: %zu edge pairs\n", c);
    count += c;

    /* Random bit patterns: every exponent, NaNs and infinities included. */
    for (int rep = 0; rep < 2; rep++) {
        for (size_t i = 0; i < N; i++) {
            const uint64_t r = hx_rng_next(&s);
            a[i] = (uint32_t)r;
            b[i] = (uint32_t)(r >> 32);
        }
        bad += check_div(env, prog, "random bits", a, b, N, &count);
    }

    /* Quotients near overflow and through the subnormal range: biased result
     * exponent t in [-26, 2] or [250, 256]; subnormal operands included. */
    c = 0;
    for (size_t i = 0; i < N; i++) {
        const uint64_t r = hx_rng_next(&s);
        const int t = (r & 1) ? -26 + (int)(r >> 8) % 29 : 250 + (int)(r >> 8) % 7;
        int ea = 0, eb;
        do {
            ea = (int)(hx_rng_next(&s) % 255);
            eb = ea - t + 127;
        } while (eb < 0 || eb > 254);
        a[i] = with_exp(&s, ea);
        b[i] = with_exp(&s, eb);
    }
    bad += check_div(env, prog, "near overflow / subnormal results", a, b, N, &c);
    printf("# div: %zu pairs with results near overflow or subnormal\n", c);
    count += c;

    /* Exact quotients: q * b with 12-bit significands is exact; results
     * normal or subnormal.  Half of them are subnormal rounding ties: q an
     * odd multiple of 2^-150 (half a subnormal step), b = odd B 2^k, a = q b. */
    c = 0;
    n = 0;
    while (n < N) {
        const uint64_t r = hx_rng_next(&s);
        double q, bb;
        if (n & 1) {
            const uint32_t B = (uint32_t)(r & 0x7ffu) | 1u;           /* odd, < 2^11 */
            const uint32_t j = (uint32_t)(r >> 11) % (0x1000000u / B) | 1u; /* odd, j B < 2^24 */
            q = ldexp((double)j, -150);
            bb = ldexp((double)B, (int)((r >> 40) % 200) - 100);
        } else {
            q = ldexp((double)((r & 0xfffu) | 0x1000u), (int)((r >> 12) % 300) - 160);
            bb = ldexp((double)(((r >> 24) & 0xfffu) | 0x1000u), (int)((r >> 36) % 200) - 100);
        }
        const double aa = q * bb; /* exact in double */
        if ((double)(float)aa != aa || (double)(float)bb != bb || fabs(aa) > 3.4e38) continue;
        a[n] = bits((float)aa) | (uint32_t)(r >> 63) << 31;
        b[n++] = bits((float)bb);
    }
    bad += check_div(env, prog, "exact quotients and subnormal ties", a, b, n, &c);
    printf("# div: %zu exact quotients (half of them subnormal ties)\n", c);
    count += c;

    /* Divisors whose significands are hard for a reciprocal: near 1, near 2,
     * runs of ones; random dividends. */
    c = 0;
    for (size_t i = 0; i < N; i++) {
        const uint64_t r = hx_rng_next(&s);
        uint32_t m;
        switch (r & 3) {
        case 0: m = (uint32_t)(r >> 8) & 0xfffu; break;                 /* just above 1 */
        case 1: m = 0x7fffffu - ((uint32_t)(r >> 8) & 0xfffu); break;   /* just below 2 */
        case 2: m = 0x7fffffu >> ((r >> 8) % 23); break;                /* ones at the end */
        default: m = (0x7fffffu << ((r >> 8) % 23)) & 0x7fffffu; break; /* ones at the front */
        }
        b[i] = m | (uint32_t)(1 + (r >> 16) % 254) << 23;
        a[i] = (uint32_t)(r >> 32);
    }
    bad += check_div(env, prog, "hard divisors", a, b, N, &c);
    printf("# div: %zu pairs with hard divisor significands\n", c);
    count += c;

    if (long_mode()) { /* every divisor significand against 32 dividends */
        c = 0;
        for (uint32_t rep = 0; rep < 32; rep++) {
            const uint32_t av = (uint32_t)hx_rng_next(&s) & 0x7fffffu;
            for (uint32_t base = 0; base < 0x800000u; base += N) {
                for (uint32_t i = 0; i < N; i++) {
                    a[i] = av | 0x3f800000u;
                    b[i] = (base + i) | 0x3f800000u;
                }
                bad += check_div(env, prog, "every divisor significand", a, b, N, &c);
            }
        }
        printf("# div (BINV_LONG): %zu pairs, every divisor significand\n", c);
        count += c;
    }
    printf("# div: %zu pairs in all, %zu mismatches\n", count, bad);
    free(a);
    free(b);
    assert_int_equal(bad, 0);
}

/* binv_sqrt of the n inputs from bit pattern base (generated on the device). */
static size_t check_sqrt_range(test_env *env, cl_program prog, uint32_t base, uint32_t n) {
    uint32_t *out = malloc((size_t)n * 4);
    assert_non_null(out);
    cl_int err;
    cl_kernel k = clCreateKernel(prog, "t_sqrt_range", &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem bo = test_buffer(env, (size_t)n * 4, NULL);
    size_t bad = 0, g = n;
    const cl_uint b32 = base;
    clSetKernelArg(k, 0, sizeof b32, &b32);
    clSetKernelArg(k, 1, sizeof bo, &bo);
    assert_int_equal(clEnqueueNDRangeKernel(env->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL),
                     CL_SUCCESS);
    test_read(env, bo, (size_t)n * 4, out);
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t in = base + i, want = bits(sqrtf(flt(in)));
        if (!same(out[i], want) && bad++ < 8)
            printf("# sqrt(%08x): binv_sqrt %08x, IEEE %08x\n", in, out[i], want);
    }
    clReleaseMemObject(bo);
    clReleaseKernel(k);
    free(out);
    return bad;
}

static void test_sqrt(void **state) {
    test_env *env = *state;
    cl_program prog = program(env->ctx);
    enum { N = 1 << 20 };
    uint32_t *x = malloc(N * 4);
    assert_non_null(x);
    size_t n = 0, count = 0, bad = 0, c = 0;
    uint64_t s = 15;
    for (size_t i = 0; i < 2 * NEDGE; i++) x[n++] = edge[i / 2] | (uint32_t)(i & 1) << 31;
    bad += check_sqrt(env, prog, "edge", x, n, &c);
    printf("# sqrt: %zu edge inputs\n", c);
    count += c;
    /* Every 4093rd bit pattern (all exponents, both signs), from a random start. */
    c = 0;
    uint32_t u = (uint32_t)hx_rng_next(&s) % 4093u;
    for (int part = 0; part < 2; part++) {
        for (n = 0; n < N && u < 0xffffffffu - 4093u; n++, u += 4093u) x[n] = u;
        bad += check_sqrt(env, prog, "strided", x, n, &c);
    }
    printf("# sqrt: %zu strided inputs\n", c);
    count += c;
    c = 0;
    for (size_t i = 0; i < N; i++) x[i] = (uint32_t)hx_rng_next(&s) & 0x7fffffffu;
    bad += check_sqrt(env, prog, "random", x, N, &c);
    count += c;

    /* Every input in [1, 4): the significand arithmetic of every finite
     * positive input (the exponent is integer work; subnormals are normalised
     * into the same range). */
    size_t lbad = check_sqrt_range(env, prog, 0x3f800000u, 1u << 24);
    printf("# sqrt: all %u inputs in [1, 4), %zu mismatches\n", 1u << 24, lbad);
    bad += lbad;
    if (long_mode()) { /* all 2^32 inputs */
        lbad = 0;
        for (uint64_t base = 0; base < (1ull << 32); base += 1u << 24)
            lbad += check_sqrt_range(env, prog, (uint32_t)base, 1u << 24);
        printf("# sqrt (BINV_LONG): all 4294967296 inputs, %zu mismatches\n", lbad);
        bad += lbad;
    }
    printf("# sqrt and rsqrt: %zu sampled inputs, %zu mismatches\n", count, bad);
    free(x);
    assert_int_equal(bad, 0);
}

/* query_device through the interposed clGetDeviceInfo. */
static void test_device_checks(void **state) {
    test_env *env = *state;
    binv_context *c;
    cl_device_fp_config fp = 0;
    assert_int_equal(clGetDeviceInfo(env->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL),
                     CL_SUCCESS);
    /* The real device: the flags follow its capability and BINV_SOFT_DIVSQRT. */
    const char *sd = getenv("BINV_SOFT_DIVSQRT");
    const int forced = sd && *sd && strcmp(sd, "0") != 0;
    assert_int_equal(env->ctx->hw_divsqrt, (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0);
    assert_int_equal(env->ctx->soft_divsqrt, forced || !env->ctx->hw_divsqrt);

    /* Without correctly rounded divide/sqrt (Mesa rusticl on llvmpipe reports
     * CL_FP_INF_NAN | CL_FP_ROUND_TO_NEAREST): accepted, software path, the
     * option the device does not allow is not passed, and the same bits. */
    assert_int_equal(create_with(env, CL_DEVICE_SINGLE_FP_CONFIG, CL_SUCCESS,
                                 CL_FP_INF_NAN | CL_FP_ROUND_TO_NEAREST, &c),
                     BINV_SUCCESS);
    assert_non_null(c);
    assert_int_equal(c->hw_divsqrt, 0);
    assert_int_equal(c->soft_divsqrt, 1);
    cl_program prog = program(c);
    assert_non_null(c->programs);
    assert_non_null(strstr(c->programs->key, "-DBINV_SOFT_DIVSQRT=1"));
    assert_null(strstr(c->programs->key, "correctly-rounded"));
    uint32_t a[2 * NEDGE], b[2 * NEDGE];
    for (size_t i = 0; i < 2 * NEDGE; i++) {
        a[i] = edge[i / 2] | (uint32_t)(i & 1) << 31;
        b[i] = edge[(i * 7 + 3) % NEDGE];
    }
    size_t count = 0;
    assert_int_equal(check_div(env, prog, "software-only device", a, b, 2 * NEDGE, &count), 0);
    assert_int_equal(check_sqrt(env, prog, "software-only device", a, 2 * NEDGE, &count), 0);
    binv_context_destroy(c);

    /* No round-to-nearest: refused. */
    assert_int_equal(create_with(env, CL_DEVICE_SINGLE_FP_CONFIG, CL_SUCCESS,
                                 CL_FP_INF_NAN | CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT, &c),
                     BINV_ERROR_UNSUPPORTED_DEVICE);
    assert_null(c);

    /* Transient failures come back as themselves; an invalid device is an
     * unsupported one. */
    const struct { cl_device_info what; cl_int status; binv_status want; } f[] = {
        {CL_DEVICE_NAME, CL_OUT_OF_RESOURCES, CL_OUT_OF_RESOURCES},
        {CL_DEVICE_LOCAL_MEM_SIZE, CL_OUT_OF_HOST_MEMORY, CL_OUT_OF_HOST_MEMORY},
        {CL_DEVICE_SINGLE_FP_CONFIG, CL_OUT_OF_RESOURCES, CL_OUT_OF_RESOURCES},
        {CL_DEVICE_ENDIAN_LITTLE, CL_OUT_OF_HOST_MEMORY, CL_OUT_OF_HOST_MEMORY},
        {CL_DEVICE_VENDOR, CL_INVALID_DEVICE, BINV_ERROR_UNSUPPORTED_DEVICE},
        {CL_DEVICE_SINGLE_FP_CONFIG, CL_INVALID_DEVICE, BINV_ERROR_UNSUPPORTED_DEVICE},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        assert_int_equal(create_with(env, f[i].what, f[i].status, 0, &c), f[i].want);
        assert_null(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_checks),
        cmocka_unit_test(test_div),
        cmocka_unit_test(test_sqrt),
    };
    return cmocka_run_group_tests(tests, test_env_setup, test_env_teardown);
}
