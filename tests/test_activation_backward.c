/* Backward of SwiGLU and RoPE (src/activation_backward.c,
 * cl/activation_backward.cl): against a double-precision analytic reference
 * and a central finite difference of the forward op itself (binv_swiglu /
 * binv_rope on f32), for f32, f16 and bf16; run-to-run and cross-context
 * bits; a row (token) alone against inside a batch; RoPE's backward against
 * the forward's own cos/sin bits with the sine negated (bitwise) and
 * backward(forward(x)) = x; golden hashes; bad arguments rejected with the
 * outputs untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

/* The storage dtype's unit in the last place at |v| (its subnormal spacing
 * below the normal range). */
static double dt_ulp(binv_dtype dt, double v) {
    const int mant = dt == BINV_DTYPE_F32 ? 23 : dt == BINV_DTYPE_F16 ? 10 : 7;
    const double tiny = dt == BINV_DTYPE_F16 ? 0x1p-24 : dt == BINV_DTYPE_F32 ? 0x1p-149 : 0x1p-133;
    return v == 0 ? tiny : fmax(ldexp(1, ilogb(v) - mant), tiny);
}

/* Uniform in (-a, a). */
static double uni(uint64_t *r, double a) {
    return ((double)(hx_rng_next(r) >> 11) * 0x1p-53 * 2 - 1) * a;
}

/* Storage of n elements, each the dtype's rounding of v(i). */
static unsigned char *host_matrix(binv_dtype dt, size_t n) {
    unsigned char *p = malloc(n * hx_dtype_size(dt));
    assert_non_null(p);
    memset(p, 0x5a, n * hx_dtype_size(dt)); /* padding: a sentinel */
    return p;
}

/* ---- SwiGLU --------------------------------------------------------------- */

enum { SR = 7, SC = 523 };
/* Offsets and row strides of gate, up, dy, dgate, dup (all different). */
static const size_t S_OFF[5] = {3, 1, 0, 2, 5}, S_PAD[5] = {5, 2, 0, 7, 1};
#define S_LD(i) (SC + S_PAD[i])
#define S_N(i) (S_OFF[i] + SR * S_LD(i) + 3)

/* Gate values: mostly (-8, 8), some (-100, 100) and the points where the
 * arithmetic changes (0, the zero of dsilu near -1.2785, s rounding to 1,
 * e underflowing). */
static double gate_value(size_t i, uint64_t *r) {
    static const double special[] = {0.0, -0.0, 1e-6, -1.2785, -1.27846, 17.0, 20.0, -20.0,
                                     -88.0, -103.5, 88.0, 30.0, -30.0, 5e-3, -5e-3, 1.0};
    if (i % 8 == 0) return uni(r, 100);
    if (i % 8 == 1) return special[(i / 8) % (sizeof special / sizeof special[0])];
    return uni(r, 8);
}

typedef struct sw_data {
    binv_dtype dt;
    unsigned char *h[5]; /* host copies: gate, up, dy, dgate, dup */
    cl_mem b[5];
} sw_data;

static void sw_make(const test_env *env, binv_dtype dt, uint64_t seed, sw_data *d) {
    d->dt = dt;
    uint64_t r = seed;
    for (int m = 0; m < 5; m++) {
        d->h[m] = host_matrix(dt, S_N(m));
        if (m < 3)
            for (size_t i = 0; i < SR; i++)
                for (size_t c = 0; c < SC; c++)
                    hx_store(dt, d->h[m], S_OFF[m] + i * S_LD(m) + c,
                             (float)(m == 0 ? gate_value(i * SC + c, &r) : uni(&r, 2)));
        d->b[m] = test_buffer(env, S_N(m) * hx_dtype_size(dt), d->h[m]);
    }
}

static void sw_free(sw_data *d) {
    for (int m = 0; m < 5; m++) {
        clReleaseMemObject(d->b[m]);
        free(d->h[m]);
    }
}

static binv_status sw_run(binv_context *ctx, const test_env *env, const sw_data *d) {
    const cl_mem *b = d->b;
    return binv_swiglu_backward(ctx, env->queue, d->dt, SR, SC, b[0], S_OFF[0], S_LD(0), b[1],
                                S_OFF[1], S_LD(1), b[2], S_OFF[2], S_LD(2), b[3], S_OFF[3], S_LD(3),
                                b[4], S_OFF[4], S_LD(4), 0, NULL, NULL);
}

/* Reads dgate and dup back into d->h[3], d->h[4]. */
static void sw_read(const test_env *env, sw_data *d) {
    for (int m = 3; m < 5; m++) test_read(env, d->b[m], S_N(m) * hx_dtype_size(d->dt), d->h[m]);
}

#define SW_AT(m, i, c) (S_OFF[m] + (i) * S_LD(m) + (c))

/* silu(g) * u through binv_swiglu on f32 of the given g and u (rows x SC). */
static void swiglu_f32(const test_env *env, const float *g, const float *u, float *y) {
    const size_t n = SR * SC * 4;
    cl_mem bg = test_buffer(env, n, g), bu = test_buffer(env, n, u), by = test_buffer(env, n, NULL);
    assert_int_equal(binv_swiglu(env->ctx, env->queue, BINV_DTYPE_F32, SR, SC, bg, 0, SC, bu, 0, SC,
                                 by, 0, SC, 0, NULL, NULL),
                     BINV_SUCCESS);
    test_read(env, by, n, y);
    clReleaseMemObject(bg); clReleaseMemObject(bu); clReleaseMemObject(by);
}

static void test_swiglu_backward_accuracy(void **state) {
    test_env *env = *state;
    int bad = 0;
    for (int t = 0; t < 3; t++) {
        const binv_dtype dt = DTYPES[t];
        sw_data d;
        sw_make(env, dt, 11 + t, &d);
        assert_int_equal(sw_run(env->ctx, env, &d), BINV_SUCCESS);
        sw_read(env, &d);
        /* 1. Analytic reference in double from the stored inputs.  The unit
         * of error is the dtype's ulp of the result plus 2^-24 of the sum of
         * the magnitudes of its terms (dsilu = s + g s (1 - s) cancels near
         * g = -1.2785, where only an absolute error is meaningful), plus
         * 2^-126 of the inputs' scale (subnormal f32 intermediates). */
        double worst[2] = {0, 0};
        for (size_t i = 0; i < SR; i++)
            for (size_t c = 0; c < SC; c++) {
                const double g = hx_load(dt, d.h[0], SW_AT(0, i, c));
                const double u = hx_load(dt, d.h[1], SW_AT(1, i, c));
                const double dy = hx_load(dt, d.h[2], SW_AT(2, i, c));
                const double s = g >= 0 ? 1 / (1 + exp(-g)) : exp(g) / (1 + exp(g));
                const double sn = g >= 0 ? exp(-g) / (1 + exp(-g)) : 1 / (1 + exp(g)); /* 1 - s */
                const double ref[2] = {dy * u * s * (1 + g * sn), dy * g * s};
                const double mag[2] = {fabs(dy * u) * s * (1 + fabs(g) * sn), fabs(dy * g * s)};
                const double floor = 0x1p-126 * fabs(dy) * (1 + fabs(u)) * (1 + fabs(g));
                for (int k = 0; k < 2; k++) {
                    const double got = hx_load(dt, d.h[3 + k], SW_AT(3 + k, i, c));
                    const double e = fabs(got - ref[k]) /
                                     (dt_ulp(dt, fabs(ref[k])) + 0x1p-24 * mag[k] + floor);
                    if (!(e <= worst[k])) worst[k] = e; /* NaN counts */
                }
            }
        printf("# swiglu_backward %s vs double: dgate %.3f, dup %.3f (units: dtype ulp + 2^-24 of the terms)\n",
               hx_dtype_name(dt), worst[0], worst[1]);
        assert_true(worst[0] <= 4.0 && worst[1] <= 4.0);
        /* 2. Central differences of binv_swiglu (f32) at the same inputs:
         * y is elementwise, so one forward call per direction perturbs every
         * element at once.  h = 2^-8 max(1, |x|); the quotient uses the
         * perturbed floats' actual distance. */
        const size_t n = SR * SC;
        float *g = malloc(n * 4), *u = malloc(n * 4), *dy = malloc(n * 4), *p[2], *y[2];
        for (int k = 0; k < 2; k++) { p[k] = malloc(n * 4); y[k] = malloc(n * 4); }
        for (size_t i = 0; i < SR; i++)
            for (size_t c = 0; c < SC; c++) {
                g[i * SC + c] = hx_load(dt, d.h[0], SW_AT(0, i, c));
                u[i * SC + c] = hx_load(dt, d.h[1], SW_AT(1, i, c));
                dy[i * SC + c] = hx_load(dt, d.h[2], SW_AT(2, i, c));
            }
        double fdw[2] = {0, 0};
        for (int wrt = 0; wrt < 2; wrt++) { /* 0: gate, 1: up */
            const float *x = wrt ? u : g;
            for (int k = 0; k < 2; k++)
                for (size_t j = 0; j < n; j++) {
                    const double h = 0x1p-8 * fmax(1.0, fabs(x[j]));
                    p[k][j] = (float)(x[j] + (k ? -h : h));
                }
            swiglu_f32(env, wrt ? g : p[0], wrt ? p[0] : u, y[0]);
            swiglu_f32(env, wrt ? g : p[1], wrt ? p[1] : u, y[1]);
            for (size_t i = 0; i < SR; i++)
                for (size_t c = 0; c < SC; c++) {
                    const size_t j = i * SC + c;
                    const double fd = dy[j] * ((double)y[0][j] - y[1][j]) / ((double)p[0][j] - p[1][j]);
                    const double got = hx_load(dt, d.h[3 + wrt], SW_AT(3 + wrt, i, c));
                    /* f32 rounding of y over 2h, and the truncation */
                    const double tol = 2e-4 * fabs(dy[j]) * (1 + fabs(u[j]) + fabs(g[j])) +
                                       dt_ulp(dt, fabs(fd));
                    const double e = fabs(got - fd) / tol;
                    if (!(e <= fdw[wrt])) fdw[wrt] = e;
                }
        }
        printf("# swiglu_backward %s vs central differences of binv_swiglu f32: dgate %.3f, dup %.3f of the bound\n",
               hx_dtype_name(dt), fdw[0], fdw[1]);
        assert_true(fdw[0] <= 1.0 && fdw[1] <= 1.0);
        free(g); free(u); free(dy);
        for (int k = 0; k < 2; k++) { free(p[k]); free(y[k]); }
        /* 3. Padding of the outputs untouched (sentinel bytes). */
        for (int m = 3; m < 5; m++) {
            const size_t es = hx_dtype_size(dt);
            for (size_t k = 0; k < S_OFF[m] * es; k++) assert_int_equal(d.h[m][k], 0x5a);
            for (size_t i = 0; i < SR; i++)
                for (size_t k = SC * es; k < S_LD(m) * es; k++)
                    assert_int_equal(d.h[m][(S_OFF[m] + i * S_LD(m)) * es + k], 0x5a);
        }
        char hex[65], name[64];
        unsigned char *both = malloc((S_N(3) + S_N(4)) * hx_dtype_size(dt));
        memcpy(both, d.h[3], S_N(3) * hx_dtype_size(dt));
        memcpy(both + S_N(3) * hx_dtype_size(dt), d.h[4], S_N(4) * hx_dtype_size(dt));
        test_sha256_hex(both, (S_N(3) + S_N(4)) * hx_dtype_size(dt), hex);
        snprintf(name, sizeof name, "swiglu_backward_%s_%dx%d", hx_dtype_name(dt), SR, SC);
        if (!test_golden_check("activation_backward.txt", name, hex)) bad++;
        free(both);
        sw_free(&d);
    }
    if (bad) fail_msg("%d swiglu_backward golden hashes differ on '%s'", bad, env->device_name);
}

/* The same bits run to run, in the adaptive context, for a row alone, and in
 * place (dgate = gate, dup = up: the same view, also through a sub-buffer of
 * other handles; and the trainer's [gate | up] rows overwritten by
 * [dgate | dup]). */
static void test_swiglu_backward_invariance(void **state) {
    test_env *env = *state;
    for (int t = 0; t < 3; t++) {
        const binv_dtype dt = DTYPES[t];
        const size_t es = hx_dtype_size(dt);
        sw_data d, e;
        sw_make(env, dt, 21 + t, &d);
        sw_make(env, dt, 21 + t, &e);
        assert_int_equal(sw_run(env->ctx, env, &d), BINV_SUCCESS);
        assert_int_equal(sw_run(env->adaptive, env, &e), BINV_SUCCESS);
        sw_read(env, &d);
        sw_read(env, &e);
        assert_memory_equal(d.h[3], e.h[3], S_N(3) * es);
        assert_memory_equal(d.h[4], e.h[4], S_N(4) * es);
        assert_int_equal(sw_run(env->ctx, env, &e), BINV_SUCCESS); /* again */
        sw_read(env, &e);
        assert_memory_equal(d.h[3], e.h[3], S_N(3) * es);
        assert_memory_equal(d.h[4], e.h[4], S_N(4) * es);
        /* Row 4 alone, at offset 0 of buffers of one row. */
        const size_t row = 4;
        cl_mem one[5];
        for (int m = 0; m < 5; m++)
            one[m] = test_buffer(env, SC * es, m < 3 ? d.h[m] + SW_AT(m, row, 0) * es : NULL);
        assert_int_equal(binv_swiglu_backward(env->ctx, env->queue, dt, 1, SC, one[0], 0, SC, one[1],
                                              0, SC, one[2], 0, SC, one[3], 0, SC, one[4], 0, SC, 0,
                                              NULL, NULL),
                         BINV_SUCCESS);
        unsigned char *buf = malloc(2 * SR * SC * es);
        for (int m = 3; m < 5; m++) {
            test_read(env, one[m], SC * es, buf);
            assert_memory_equal(buf, d.h[m] + SW_AT(m, row, 0) * es, SC * es);
        }
        for (int m = 0; m < 5; m++) clReleaseMemObject(one[m]);
        /* [gate | up] rows of 2*SC, overwritten in place by [dgate | dup]. */
        unsigned char *gu = malloc(2 * SR * SC * es);
        for (size_t i = 0; i < SR; i++) {
            memcpy(gu + 2 * i * SC * es, d.h[0] + SW_AT(0, i, 0) * es, SC * es);
            memcpy(gu + (2 * i + 1) * SC * es, d.h[1] + SW_AT(1, i, 0) * es, SC * es);
        }
        cl_mem bgu = test_buffer(env, 2 * SR * SC * es, gu);
        assert_int_equal(binv_swiglu_backward(env->ctx, env->queue, dt, SR, SC, bgu, 0, 2 * SC, bgu,
                                              SC, 2 * SC, d.b[2], S_OFF[2], S_LD(2), bgu, 0, 2 * SC,
                                              bgu, SC, 2 * SC, 0, NULL, NULL),
                         BINV_SUCCESS);
        test_read(env, bgu, 2 * SR * SC * es, buf);
        for (size_t i = 0; i < SR; i++) {
            assert_memory_equal(buf + 2 * i * SC * es, d.h[3] + SW_AT(3, i, 0) * es, SC * es);
            assert_memory_equal(buf + (2 * i + 1) * SC * es, d.h[4] + SW_AT(4, i, 0) * es, SC * es);
        }
        /* dgate = dy in place, dup = up through a sub-buffer (another handle,
         * the same bytes: the same view once resolved). */
        test_write(env, bgu, 2 * SR * SC * es, gu);
        cl_buffer_region reg = {0, 2 * SR * SC * es};
        cl_int err;
        cl_mem subb = clCreateSubBuffer(bgu, 0, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
        assert_int_equal(err, CL_SUCCESS);
        cl_mem bdy = test_buffer(env, S_N(2) * es, d.h[2]);
        assert_int_equal(binv_swiglu_backward(env->ctx, env->queue, dt, SR, SC, bgu, 0, 2 * SC, bgu,
                                              SC, 2 * SC, bdy, S_OFF[2], S_LD(2), bdy, S_OFF[2],
                                              S_LD(2), subb, SC, 2 * SC, 0, NULL, NULL),
                         BINV_SUCCESS);
        unsigned char *dyo = malloc(S_N(2) * es);
        test_read(env, bdy, S_N(2) * es, dyo);
        test_read(env, bgu, 2 * SR * SC * es, buf);
        for (size_t i = 0; i < SR; i++) {
            assert_memory_equal(dyo + SW_AT(2, i, 0) * es, d.h[3] + SW_AT(3, i, 0) * es, SC * es);
            assert_memory_equal(buf + (2 * i + 1) * SC * es, d.h[4] + SW_AT(4, i, 0) * es, SC * es);
        }
        clReleaseMemObject(subb); clReleaseMemObject(bdy); clReleaseMemObject(bgu);
        free(gu); free(buf); free(dyo);
        sw_free(&d);
        sw_free(&e);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

enum { RT = 24, RH = 3, RD = 64, RPAIRS = RH * RD / 2 };
#define R_LD (RH * RD + 3)
#define R_OFF 2
#define R_N (R_OFF + RT * R_LD + 1)
#define R_AT(t, e) (R_OFF + (size_t)(t) * R_LD + (e))
static const float THETA = 10000.0f;

static void positions(cl_uint *pos) { /* pos[0] unused (offset 1) */
    uint64_t r = 5;
    pos[0] = 77;
    for (int t = 0; t < RT; t++)
        pos[t + 1] = t < 8 ? (cl_uint)t : t == 8 ? 1u << 20 : (cl_uint)(hx_rng_next(&r) % 1000000);
}

/* x of the dtype, values uniform in (-1, 1). */
static unsigned char *rope_input(binv_dtype dt, uint64_t seed) {
    unsigned char *x = host_matrix(dt, R_N);
    uint64_t r = seed;
    for (int t = 0; t < RT; t++)
        for (int e = 0; e < RH * RD; e++) hx_store(dt, x, R_AT(t, e), (float)uni(&r, 1));
    return x;
}

typedef binv_status (*rope_fn)(binv_context *, cl_command_queue, binv_dtype, size_t, size_t,
                               size_t, cl_mem, size_t, size_t, cl_mem, size_t, float, cl_uint,
                               const cl_event *, cl_event *);

/* fn (binv_rope or binv_rope_backward) on a copy of x; the result in out. */
static void rope_apply(const test_env *env, binv_context *ctx, rope_fn fn, binv_dtype dt,
                       const unsigned char *x, cl_mem pos, unsigned char *out) {
    const size_t bytes = R_N * hx_dtype_size(dt);
    cl_mem b = test_buffer(env, bytes, x);
    assert_int_equal(fn(ctx, env->queue, dt, RT, RH, RD, b, R_OFF, R_LD, pos, 1, THETA, 0, NULL,
                        NULL),
                     BINV_SUCCESS);
    test_read(env, b, bytes, out);
    clReleaseMemObject(b);
}

static void test_rope_backward(void **state) {
    test_env *env = *state;
    cl_uint pos[RT + 1];
    positions(pos);
    cl_mem bp = test_buffer(env, sizeof pos, pos);
    /* The forward's cos and sin bits: binv_rope (f32) of the pairs (1, 0)
     * gives (1*c - 0*s, 1*s + 0*c) = (c, s) exactly. */
    unsigned char *unit = host_matrix(BINV_DTYPE_F32, R_N), *cs = host_matrix(BINV_DTYPE_F32, R_N);
    for (int t = 0; t < RT; t++)
        for (int e = 0; e < RH * RD; e++) hx_store(BINV_DTYPE_F32, unit, R_AT(t, e), e % 2 ? 0 : 1);
    rope_apply(env, env->ctx, binv_rope, BINV_DTYPE_F32, unit, bp, cs);
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        const binv_dtype dt = DTYPES[k];
        const size_t es = hx_dtype_size(dt), bytes = R_N * es;
        unsigned char *x = rope_input(dt, 7 + k), *dx = host_matrix(dt, R_N);
        unsigned char *fw = host_matrix(dt, R_N), *rt = host_matrix(dt, R_N);
        unsigned char *again = host_matrix(dt, R_N);
        rope_apply(env, env->ctx, binv_rope_backward, dt, x, bp, dx);
        /* 1. Bitwise: the rotation by -a with the forward's c and s, s
         * negated, in the kernel's order (products rounded, then added). */
        size_t mism = 0;
        for (int t = 0; t < RT; t++)
            for (int e = 0; e < RH * RD; e += 2) {
                const float c = hx_load(BINV_DTYPE_F32, cs, R_AT(t, e));
                const float ns = -hx_load(BINV_DTYPE_F32, cs, R_AT(t, e + 1));
                const float y0 = hx_load(dt, x, R_AT(t, e)), y1 = hx_load(dt, x, R_AT(t, e + 1));
                volatile float p0 = y0 * c, p1 = y1 * ns, p2 = y0 * ns, p3 = y1 * c;
                unsigned char want[8];
                hx_store(dt, want, 0, p0 - p1);
                hx_store(dt, want, 1, p2 + p3);
                if (memcmp(want, dx + R_AT(t, e) * es, 2 * es)) mism++;
            }
        assert_int_equal(mism, 0);
        /* 2. Double reference: the angle (float)pos * f exactly (the
         * forward's test checks the angle's own rounding). */
        double worst = 0, fdw = 0, rtw = 0;
        for (int t = 0; t < RT; t++)
            for (int e = 0; e < RH * RD; e += 2) {
                const int i = (e % RD) / 2;
                const float f = (float)pow((double)THETA, -(double)(2 * i) / RD);
                const double a = (double)((float)pos[t + 1] * f);
                const double y0 = hx_load(dt, x, R_AT(t, e)), y1 = hx_load(dt, x, R_AT(t, e + 1));
                const double r0 = y0 * cos(a) + y1 * sin(a), r1 = -y0 * sin(a) + y1 * cos(a);
                const double e0 = fabs(hx_load(dt, dx, R_AT(t, e)) - r0) / (6e-7 + dt_ulp(dt, fabs(r0)) / 2);
                const double e1 = fabs(hx_load(dt, dx, R_AT(t, e + 1)) - r1) / (6e-7 + dt_ulp(dt, fabs(r1)) / 2);
                worst = fmax(worst, fmax(e0, e1));
            }
        printf("# rope_backward %s vs double: max error %.3f of its bound (6e-7 + half a dtype ulp)\n",
               hx_dtype_name(dt), worst);
        assert_true(worst <= 1.0);
        /* 3. Central differences of binv_rope (f32): L = sum dy . rope(x)
         * with dy = x above; pairs are independent, so moving every x0 (or
         * every x1) by +-h at once gives each pair's dL/dx0 (dL/dx1). */
        unsigned char *xp = host_matrix(BINV_DTYPE_F32, R_N), *yp = host_matrix(BINV_DTYPE_F32, R_N);
        unsigned char *ym = host_matrix(BINV_DTYPE_F32, R_N);
        uint64_t r = 99;
        float *base = malloc(R_N * 4);
        for (size_t j = 0; j < R_N; j++) base[j] = (float)uni(&r, 1);
        const float h = 0x1p-4f;
        for (int wrt = 0; wrt < 2; wrt++) {
            for (int sgn = 0; sgn < 2; sgn++) {
                for (int t = 0; t < RT; t++)
                    for (int e = 0; e < RH * RD; e++)
                        hx_store(BINV_DTYPE_F32, xp, R_AT(t, e),
                                 base[R_AT(t, e)] + (e % 2 == wrt ? (sgn ? -h : h) : 0.0f));
                rope_apply(env, env->ctx, binv_rope, BINV_DTYPE_F32, xp, bp, sgn ? ym : yp);
            }
            for (int t = 0; t < RT; t++)
                for (int e = 0; e < RH * RD; e += 2) {
                    double fd = 0;
                    for (int q = 0; q < 2; q++)
                        fd += hx_load(dt, x, R_AT(t, e + q)) *
                              ((double)hx_load(BINV_DTYPE_F32, yp, R_AT(t, e + q)) -
                               hx_load(BINV_DTYPE_F32, ym, R_AT(t, e + q))) / (2 * h);
                    const double got = hx_load(dt, dx, R_AT(t, e + wrt));
                    fdw = fmax(fdw, fabs(got - fd) / (1e-5 + dt_ulp(dt, fabs(fd))));
                }
        }
        printf("# rope_backward %s vs central differences of binv_rope f32: %.3f of the bound (1e-5 + a dtype ulp)\n",
               hx_dtype_name(dt), fdw);
        assert_true(fdw <= 1.0);
        free(base); free(xp); free(yp); free(ym);
        /* 4. backward(forward(x)) = x up to the roundings. */
        rope_apply(env, env->ctx, binv_rope, dt, x, bp, fw);
        rope_apply(env, env->ctx, binv_rope_backward, dt, fw, bp, rt);
        for (int t = 0; t < RT; t++)
            for (int e = 0; e < RH * RD; e++) {
                const double v = hx_load(dt, x, R_AT(t, e));
                rtw = fmax(rtw, fabs(hx_load(dt, rt, R_AT(t, e)) - v) / (1e-6 + 2 * dt_ulp(dt, 1.0)));
            }
        printf("# rope_backward(rope(x)) %s: max |error| %.3f of 1e-6 + 2 dtype ulps of 1\n",
               hx_dtype_name(dt), rtw);
        assert_true(rtw <= 1.0);
        /* 5. The same bits again, in the adaptive context, and for one
         * token alone; padding untouched. */
        rope_apply(env, env->adaptive, binv_rope_backward, dt, x, bp, again);
        assert_memory_equal(again, dx, bytes);
        rope_apply(env, env->ctx, binv_rope_backward, dt, x, bp, again);
        assert_memory_equal(again, dx, bytes);
        for (size_t j = 0; j < R_OFF * es; j++) assert_int_equal(dx[j], 0x5a);
        const int tok = 9;
        cl_mem one = test_buffer(env, RH * RD * es, x + R_AT(tok, 0) * es);
        cl_mem p1 = test_buffer(env, 4, &pos[tok + 1]);
        assert_int_equal(binv_rope_backward(env->ctx, env->queue, dt, 1, RH, RD, one, 0, RH * RD, p1,
                                            0, THETA, 0, NULL, NULL),
                         BINV_SUCCESS);
        test_read(env, one, RH * RD * es, again);
        assert_memory_equal(again, dx + R_AT(tok, 0) * es, RH * RD * es);
        clReleaseMemObject(one); clReleaseMemObject(p1);
        char hex[65], name[64];
        test_sha256_hex(dx, bytes, hex);
        snprintf(name, sizeof name, "rope_backward_%s_%dx%dx%d", hx_dtype_name(dt), RT, RH, RD);
        if (!test_golden_check("activation_backward.txt", name, hex)) bad++;
        free(x); free(dx); free(fw); free(rt); free(again);
    }
    free(unit); free(cs);
    clReleaseMemObject(bp);
    if (bad) fail_msg("%d rope_backward golden hashes differ on '%s'", bad, env->device_name);
}

/* ---- bad arguments ---------------------------------------------------------- */

static cl_mem flags_buffer(const test_env *env, cl_mem_flags flags, size_t bytes) {
    cl_int err;
    cl_mem b = clCreateBuffer(env->context, flags, bytes, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    return b;
}

static void test_bad_arguments(void **state) {
    test_env *env = *state;
    binv_context *c = env->ctx;
    cl_command_queue q = env->queue;
    const binv_dtype F = BINV_DTYPE_F32;
    enum { R = 4, C = 16, N = R * C };
    float init[4 * N];
    for (int i = 0; i < 4 * N; i++) init[i] = 0.25f * (float)(i % 13) - 1.5f;
    cl_mem g = test_buffer(env, N * 4, init), u = test_buffer(env, N * 4, init + N);
    cl_mem dy = test_buffer(env, N * 4, init + 2 * N), out = test_buffer(env, 2 * N * 4, init);
    cl_mem ro = flags_buffer(env, CL_MEM_READ_ONLY, N * 4), wo = flags_buffer(env, CL_MEM_WRITE_ONLY, N * 4);
    cl_int err;
    cl_context other = clCreateContext(NULL, 1, &env->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem fa = clCreateBuffer(other, CL_MEM_READ_WRITE, N * 4, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_event ev = (cl_event)(uintptr_t)1;
#define SWB(ctx_, dt_, rows_, cols_, G, go, lg, U, uo, lu, D, dyo, ld, DG, dgo, ldg, DU, duo, ldu, ne, wl) \
    binv_swiglu_backward(ctx_, q, dt_, rows_, cols_, G, go, lg, U, uo, lu, D, dyo, ld, DG, dgo, ldg, \
                         DU, duo, ldu, ne, wl, &ev)
#define EXPECT(call, st)                                                                    \
    do {                                                                                    \
        ev = (cl_event)(uintptr_t)1;                                                        \
        assert_int_equal(call, st);                                                         \
        assert_null(ev);                                                                    \
        assert_true(strlen(binv_context_last_error(c)) > 0);                                \
    } while (0)
    /* out holds dgate at 0 and dup at N */
    assert_int_equal(binv_swiglu_backward(NULL, q, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(SWB(c, (binv_dtype)7, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_UNSUPPORTED_DTYPE);
    EXPECT(binv_swiglu_backward(c, NULL, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL, &ev), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 1, NULL), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(SWB(c, F, (size_t)1 << 31, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_INVALID_DIMENSION);
    EXPECT(SWB(c, F, R, C, g, 0, C - 1, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C - 1, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C - 1, 0, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    assert_non_null(strstr(binv_context_last_error(c), "dup"));
    EXPECT(SWB(c, F, 3, C, g, 0, C, u, 0, C, dy, 0, SIZE_MAX / 2, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_INVALID_DIMENSION);
    EXPECT(SWB(c, F, R, C, g, 1, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N + 1, C, 0, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    EXPECT(SWB(c, F, R, C, NULL, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(SWB(c, F, R, C, g, 0, C, fa, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_CONTEXT_MISMATCH);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, ro, 0, C, out, N, C, 0, NULL), BINV_ERROR_ACCESS_FLAGS);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, wo, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_ERROR_ACCESS_FLAGS);
    /* overlaps: dgate on gate shifted by one; dup = dgate; dup half over dgate;
     * dgate over dy through a sub-buffer of another handle */
    EXPECT(SWB(c, F, R, C - 1, g, 0, C, u, 0, C, dy, 0, C, g, 1, C, out, N, C, 0, NULL), BINV_ERROR_ALIASING);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, 0, C, 0, NULL), BINV_ERROR_ALIASING);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N / 2, C, 0, NULL), BINV_ERROR_ALIASING);
    EXPECT(SWB(c, F, R, C, g, 0, C, u, 0, C, dy, 0, C, g, 0, C, g, 0, C, 0, NULL), BINV_ERROR_ALIASING);
    {
        cl_buffer_region reg = {0, N * 4};
        cl_mem s = clCreateSubBuffer(dy, 0, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
        assert_int_equal(err, CL_SUCCESS);
        EXPECT(SWB(c, F, R, C - 2, g, 0, C, u, 0, C, dy, 0, C, s, 2, C, out, N, C, 0, NULL), BINV_ERROR_ALIASING);
        clReleaseMemObject(s);
    }
    /* nothing was written */
    float back[2 * N];
    test_read(env, out, 2 * N * 4, back);
    assert_memory_equal(back, init, 2 * N * 4);
    test_read(env, g, N * 4, back);
    assert_memory_equal(back, init, N * 4);
    test_read(env, dy, N * 4, back);
    assert_memory_equal(back, init + 2 * N, N * 4);
    /* empty: a marker event, nothing read */
    ev = NULL;
    assert_int_equal(SWB(c, F, 0, C, g, 0, C, u, 0, C, dy, 0, C, out, 0, C, out, N, C, 0, NULL), BINV_SUCCESS);
    assert_non_null(ev);
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    /* RoPE backward: binv_rope's rules */
    cl_uint pos[R] = {0, 1, 2, 3};
    cl_mem bp = test_buffer(env, sizeof pos, pos), x = test_buffer(env, N * 4, init);
#define RB(dt_, tok, h, hd, X, xo, ldx, P, po, th) \
    binv_rope_backward(c, q, dt_, tok, h, hd, X, xo, ldx, P, po, th, 0, NULL, &ev)
    assert_int_equal(binv_rope_backward(NULL, q, F, R, 2, 8, x, 0, C, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(RB((binv_dtype)0, R, 2, 8, x, 0, C, bp, 0, 1e4f), BINV_ERROR_UNSUPPORTED_DTYPE);
    EXPECT(RB(F, R, 2, 7, x, 0, C, bp, 0, 1e4f), BINV_ERROR_INVALID_DIMENSION);
    EXPECT(RB(F, R, 0, 8, x, 0, C, bp, 0, 1e4f), BINV_ERROR_INVALID_DIMENSION);
    EXPECT(RB(F, R, 2, 8, x, 0, C, bp, 0, 1.0f), BINV_ERROR_INVALID_VALUE);
    EXPECT(RB(F, R, 2, 8, x, 0, C, bp, 0, NAN), BINV_ERROR_INVALID_VALUE);
    EXPECT(RB(F, R, 2, 8, x, 0, C, bp, 0, INFINITY), BINV_ERROR_INVALID_VALUE);
    EXPECT(RB(F, R, 2, 8, x, 0, C - 1, bp, 0, 1e4f), BINV_ERROR_INVALID_LEADING_DIMENSION);
    EXPECT(RB(F, R, 2, 8, x, 1, C, bp, 0, 1e4f), BINV_ERROR_BUFFER_TOO_SMALL);
    EXPECT(RB(F, R, 2, 8, x, 0, C, bp, 1, 1e4f), BINV_ERROR_BUFFER_TOO_SMALL);
    EXPECT(RB(F, R, 2, 8, x, 0, C, NULL, 0, 1e4f), BINV_ERROR_INVALID_ARGUMENT);
    EXPECT(RB(F, 2, 2, 8, x, 8, 24, x, 8, 1e4f), BINV_ERROR_ALIASING);
    EXPECT(RB(F, R, 2, 8, ro, 0, C, bp, 0, 1e4f), BINV_ERROR_ACCESS_FLAGS);
    EXPECT(RB(F, R, 2, 8, fa, 0, C, bp, 0, 1e4f), BINV_ERROR_CONTEXT_MISMATCH);
    test_read(env, x, N * 4, back);
    assert_memory_equal(back, init, N * 4);
    ev = NULL;
    assert_int_equal(RB(F, 0, 2, 8, x, 0, C, bp, 0, 1e4f), BINV_SUCCESS);
    assert_non_null(ev);
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
#undef RB
#undef SWB
#undef EXPECT
    cl_mem all[] = {g, u, dy, out, ro, wo, fa, bp, x};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) clReleaseMemObject(all[i]);
    clReleaseContext(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swiglu_backward_accuracy),
        cmocka_unit_test(test_swiglu_backward_invariance),
        cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("activation_backward", tests, test_env_setup,
                                       test_env_teardown);
}
