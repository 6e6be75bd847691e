/* RoPE and SwiGLU (src/activation.c, cl/activation.cl): accuracy against a
 * double reference, each token's or row's result independent of the batch,
 * golden hashes, bad input with the output untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

static void test_rope(void **state) {
    test_env *env = *state;
    enum { T = 64, H = 3, HD = 128 };
    const size_t ld = H * HD + 2, n = T * ld + 1;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    cl_uint pos[T + 1];
    uint64_t r = 3;
    for (size_t i = 0; i < n; i++) x[i] = (float)((int64_t)(hx_rng_next(&r) >> 40) - (1 << 23)) / (float)(1 << 23);
    pos[0] = 0;
    for (int t = 0; t < T; t++) pos[t + 1] = t < 8 ? (cl_uint)t : (cl_uint)(hx_rng_next(&r) % 1000000);
    cl_mem bx = test_buffer(env, n * 4, x), bp = test_buffer(env, sizeof pos, pos);
    binv_status st = binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 1, ld, bp, 1,
                               10000.0f, 0, NULL, NULL);
    assert_int_equal(st, BINV_SUCCESS);
    test_read(env, bx, n * 4, y);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < HD / 2; i++) {
                size_t b = 1 + t * ld + h * HD + 2 * i;
                /* The library's angle is the float (float)pos * f, with f
                 * the float nearest the frequency; the reference takes that
                 * angle exactly: what is checked is sin/cos and the rotation. */
                float f = (float)pow(10000.0, -(double)(2 * i) / HD);
                double a = (double)((float)pos[t + 1] * f);
                double e0, e1;
                hx_rope_ref(x[b], x[b + 1], a, &e0, &e1);
                double tol = 6e-7;
                double err = fmax(fabs(y[b] - e0), fabs(y[b + 1] - e1)) / tol;
                if (err > worst) worst = err;
            }
    printf("# rope: max error %.3f of its bound (6e-7 absolute, |x| < 1, positions < 10^6)\n", worst);
    assert_true(worst <= 1.0);
    /* untouched padding */
    assert_memory_equal(&y[0], &x[0], 4);
    /* Each token's rotation is its own: token t of a batch of T equals the
     * token alone.  And the bits are portable: golden hash. */
    cl_mem one = test_buffer(env, H * HD * 4, x + 1 + 9 * ld);
    cl_mem bp1 = test_buffer(env, 4, &pos[10]);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, 1, H, HD, one, 0, H * HD, bp1, 0,
                               10000.0f, 0, NULL, NULL), BINV_SUCCESS);
    float alone[H * HD];
    test_read(env, one, sizeof alone, alone);
    assert_memory_equal(alone, y + 1 + 9 * ld, sizeof alone);
    char hex[65];
    test_sha256_hex(y, n * 4, hex);
    if (!test_golden_check("attention.txt", "rope_f32_64x3x128", hex))
        fail_msg("rope golden hash differs on '%s'", env->device_name);
    /* bad input: odd head_dim, theta <= 1, positions too small; x untouched */
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, 7, bx, 0, ld, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_INVALID_DIMENSION);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, ld, bp, 0, 1.0f, 0, NULL, NULL), BINV_ERROR_INVALID_VALUE);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, ld, bp, 2, 1e4f, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
    assert_int_equal(binv_rope(env->ctx, env->queue, BINV_DTYPE_F32, T, H, HD, bx, 0, 10, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
    assert_int_equal(binv_rope(env->ctx, env->queue, (binv_dtype)9, T, H, HD, bx, 0, ld, bp, 0, 1e4f, 0, NULL, NULL), BINV_ERROR_UNSUPPORTED_DTYPE);
    assert_true(strlen(binv_context_last_error(env->ctx)) > 0);
    float *z = malloc(n * 4);
    test_read(env, bx, n * 4, z);
    assert_memory_equal(z, y, n * 4);
    clReleaseMemObject(bx); clReleaseMemObject(bp); clReleaseMemObject(one); clReleaseMemObject(bp1);
    free(x); free(y); free(z);
}

static void test_swiglu(void **state) {
    test_env *env = *state;
    enum { R = 5, C = 1000 };
    int bad = 0;
    for (int d = 0; d < 3; d++) {
        binv_dtype dt = DTYPES[d];
        size_t es = hx_dtype_size(dt);
        unsigned char *g = malloc(R * C * es), *u = malloc(R * C * es), *y = malloc(R * C * es);
        hx_fill_wide(dt, g, R * C, 1);
        hx_fill_wide(dt, u, R * C, 2);
        cl_mem bg = test_buffer(env, R * C * es, g), bu = test_buffer(env, R * C * es, u);
        cl_mem by = test_buffer(env, R * C * es, NULL);
        assert_int_equal(hx_swiglu_binv(env->ctx, env->queue, dt, R, C, bg, bu, by, C, NULL), BINV_SUCCESS);
        test_read(env, by, R * C * es, y);
        double worst = 0;
        for (size_t i = 0; i < R * C; i++) {
            double gv = hx_load(dt, g, i), uv = hx_load(dt, u, i);
            double ref = hx_swiglu_ref(gv, uv);
            const int mant = dt == BINV_DTYPE_F32 ? 23 : dt == BINV_DTYPE_F16 ? 10 : 7;
            const double tiny = dt == BINV_DTYPE_F16 ? 0x1p-24 : dt == BINV_DTYPE_F32 ? 0x1p-149 : 0x1p-133;
            if (fabs(ref) > (dt == BINV_DTYPE_F16 ? 65504.0 : 3e38) || ref == 0) continue;
            /* Below the normal range the f32 intermediates silu(g) and
             * exp(-|g|) are subnormal or 0: the error is then absolute,
             * <= 2^-126 |u|, not relative. */
            double ulp = fmax(fmax(ldexp(1, ilogb(ref) - mant), tiny), 0x1p-126 * fabs(uv));
            double e = fabs(hx_load(dt, y, i) - ref) / ulp;
            if (e > worst) worst = e;
        }
        printf("# swiglu %s: max error %.2f ulp\n", hx_dtype_name(dt), worst);
        assert_true(worst <= 4.0);
        char hex[65], name[48];
        test_sha256_hex(y, R * C * es, hex);
        snprintf(name, sizeof name, "swiglu_%s_5x1000", hx_dtype_name(dt));
        if (!test_golden_check("attention.txt", name, hex)) bad++;
        /* in place into gate gives the same bits */
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bg, 0, C, bu, 0, C, bg, 0, C, 0, NULL, NULL), BINV_SUCCESS);
        unsigned char *y2 = malloc(R * C * es);
        test_read(env, bg, R * C * es, y2);
        assert_memory_equal(y, y2, R * C * es);
        /* y = gate in place with up the other half of the same rows
         * ([gate | up] rows of 2C): allowed, same bits */
        {
            unsigned char *gu = malloc(2 * R * C * es), *o2 = malloc(2 * R * C * es);
            for (size_t r = 0; r < R; r++) {
                memcpy(gu + 2 * r * C * es, g + r * C * es, C * es);
                memcpy(gu + (2 * r + 1) * C * es, u + r * C * es, C * es);
            }
            cl_mem bgu = test_buffer(env, 2 * R * C * es, gu);
            assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bgu, 0, 2 * C, bgu, C, 2 * C, bgu, 0, 2 * C, 0, NULL, NULL), BINV_SUCCESS);
            test_read(env, bgu, 2 * R * C * es, o2);
            for (size_t r = 0; r < R; r++)
                assert_memory_equal(o2 + 2 * r * C * es, y + r * C * es, C * es);
            /* y = up's half while gate is read: a partial overlap */
            assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bgu, 0, 2 * C, bgu, C, 2 * C, bgu, 1, 2 * C, 0, NULL, NULL), BINV_ERROR_ALIASING);
            clReleaseMemObject(bgu);
            free(gu); free(o2);
        }
        /* partial overlap, bad ld: errors, nothing written */
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C - 1, bu, 0, C, bu, 0, C, bu, 1, C, 0, NULL, NULL), BINV_ERROR_ALIASING);
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R, C, bu, 0, C - 1, bu, 0, C, by, 0, C, 0, NULL, NULL), BINV_ERROR_INVALID_LEADING_DIMENSION);
        assert_int_equal(binv_swiglu(env->ctx, env->queue, dt, R + 1, C, bu, 0, C, bu, 0, C, by, 0, C, 0, NULL, NULL), BINV_ERROR_BUFFER_TOO_SMALL);
        test_read(env, bu, R * C * es, y2);
        assert_memory_equal(u, y2, R * C * es);
        clReleaseMemObject(bg); clReleaseMemObject(bu); clReleaseMemObject(by);
        free(g); free(u); free(y); free(y2);
    }
    if (bad) fail_msg("%d swiglu golden hashes differ on '%s'", bad, env->device_name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu),
    };
    return cmocka_run_group_tests_name("activation", tests, test_env_setup, test_env_teardown);
}
