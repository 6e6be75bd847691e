/* The native (tensor-core) GEMM path, binv_options.path = BINV_PATH_NATIVE
 * (src/gemm_native.c, cl/gemm_native*.cl).  On a device without it, a native
 * request falls back to the portable path (bits equal to the default
 * context's, and binv_context_path says why).  On an NVIDIA GPU of compute
 * capability >= 8: bf16/f16 in the LLM layout are batch-invariant (every m,
 * row position, offset, aligned and unaligned loads), deterministic,
 * accurate, with golden hashes per architecture (tests/golden/gemm_native.txt),
 * and every shape of the large-m kernels gives the same bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "gemm_problem.h"

static const binv_dtype DTYPES[] = {BINV_DTYPE_F32, BINV_DTYPE_F16, BINV_DTYPE_BF16};

static void test_gemm_native(void **state) {
    test_env *env = *state;
    binv_options o = {sizeof o, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_NATIVE};
    binv_context *nat = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, &o, &nat), BINV_SUCCESS);
    static const size_t ms[] = {1, 2, 3, 17, 64, 129, 257};
    const size_t mmax = 300;
    if (binv_context_path(nat) == BINV_PATH_PORTABLE) {
        const char *why = binv_context_last_error(nat);
        printf("# native path not available here: %s\n", why);
        assert_non_null(strstr(why, "portable"));
        problem p;
        problem_init(&p, BINV_DTYPE_BF16, BINV_NO_TRANS, BINV_TRANS, 40, 70, 300, 5);
        unsigned char *x = run_rows(env, nat, &p, 0, 40, 0, 1.0f, 0.0f);
        unsigned char *y = run_rows(env, env->ctx, &p, 0, 40, 0, 1.0f, 0.0f);
        assert_memory_equal(x, y, 40 * p.ldc * 2);
        free(x); free(y);
        problem_free(&p);
        binv_context_destroy(nat);
        return;
    }
    /* Other shapes of the large-m kernel (on compute capability 9.0 the
     * wgmma kernel; elsewhere the knob is ignored): 128 x 128 and 64 x 128
     * tiles, and 256-wide tiles, with so few persistent work-groups that
     * each walks several tiles.  Same bits. */
    static const char *const shapes[][2] = {
        {"BINV_NATIVE_WG", "32,1,2,3,128,0,2,2"}, {"BINV_NATIVE_WG", "32,1,1,3,128,0,4,3"},
        {"BINV_NATIVE_WG", "32,2,1,2,256,0,1,1"}, {"BINV_NATIVE_WG", "64,1,1,2,128,0,2,3"},
        {"BINV_NATIVE_WG", "16,1,2,4,128,1,2,2"},
        /* the mma.sync kernel for large m, also on 9.0 */
        {"BINV_NATIVE_WGMMA", "0"}};
    enum { NS = sizeof shapes / sizeof *shapes };
    binv_context *shaped[NS];
    for (size_t si = 0; si < NS; si++) {
        shaped[si] = test_ctx_tuned(env, BINV_SCHEDULE_INVARIANT, BINV_PATH_NATIVE, 1,
                                    &shapes[si]);
        assert_non_null(shaped[si]);
    }
    cl_uint cc[2] = {0, 0};
    clGetDeviceInfo(env->device, 0x4000, sizeof cc[0], &cc[0], NULL);
    clGetDeviceInfo(env->device, 0x4001, sizeof cc[1], &cc[1], NULL);
    int bad = 0;
    for (int d = 1; d < 3; d++)
        for (int kk = 0; kk < 3; kk++) {
            const size_t k = kk ? 1003 : 1024, n = 200;
            problem p;
            /* kk = 0: rows of A and W 16-byte aligned (k = 1024, no pad);
             * kk = 1: k = 1003, unaligned rows; kk = 2: k = 1003 in rows of
             * 1008 (aligned, a partial last chunk) and ldc = 208 (the native
             * kernels' 16-byte stores of C). */
            problem_init_pad(&p, DTYPES[d], BINV_NO_TRANS, BINV_TRANS, mmax, n, k,
                             77 + k + (kk == 2 ? 2 : 0), kk == 2 ? 5 : 0);
            if (kk == 2) {
                p.ldc = 208;
                p.c_elems = mmax * p.ldc;
                free(p.c);
                p.c = malloc(p.c_elems * hx_dtype_size(p.dtype));
                assert_non_null(p.c);
                hx_fill_wide(p.dtype, p.c, p.c_elems, 99);
            }
            unsigned char *full = run_rows(env, nat, &p, 0, mmax, 0, 1.0f, 0.0f);
            for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                const size_t m = ms[mi], starts[2] = {0, mmax - m};
                for (int si = 0; si < 2; si++) {
                    unsigned char *out = run_rows(env, nat, &p, starts[si], m, (size_t)(3 * si + 1),
                                                  1.0f, 0.0f);
                    for (size_t i = 0; i < m; i++)
                        if (!rows_equal(&p, out, i, full, starts[si] + i))
                            fail_msg("native %s k=%zu: row %zu in a batch of %zu differs",
                                     hx_dtype_name(DTYPES[d]), k, starts[si] + i, m);
                    free(out);
                }
            }
            for (int rep = 0; rep < 3; rep++) {
                unsigned char *again = run_rows(env, nat, &p, 0, mmax, 0, 1.0f, 0.0f);
                assert_memory_equal(again, full, mmax * p.ldc * hx_dtype_size(p.dtype));
                free(again);
            }
            for (size_t si = 0; si < NS; si++) {
                unsigned char *other = run_rows(env, shaped[si], &p, 0, mmax, 0, 1.0f, 0.0f);
                if (memcmp(other, full, mmax * p.ldc * hx_dtype_size(p.dtype)))
                    fail_msg("native %s k=%zu: %s=%s changed the bits",
                             hx_dtype_name(DTYPES[d]), k, shapes[si][0], shapes[si][1]);
                free(other);
            }
            /* accuracy: the portable bound (products exact, f32 sums) */
            check_accuracy(&p, full, 1.0f, 0.0f, "native");
            unsigned char *ab = run_rows(env, nat, &p, 0, mmax, 0, 0.5f, -1.25f);
            check_accuracy(&p, ab, 0.5f, -1.25f, "native alpha/beta");
            free(ab);
            char hex[65], name[96];
            test_sha256_hex(full, mmax * p.ldc * hx_dtype_size(p.dtype), hex);
            snprintf(name, sizeof name, "native_cc%u%u_%s_%zux%zux%zu%s", cc[0], cc[1],
                     hx_dtype_name(DTYPES[d]), mmax, n, k, kk == 2 ? "_ld1008_ldc208" : "");
            if (!test_golden_check("gemm_native.txt", name, hex)) bad++;
            free(full);
            problem_free(&p);
        }
    for (size_t si = 0; si < NS; si++) binv_context_destroy(shaped[si]);
    binv_context_destroy(nat);
    if (bad) fail_msg("%d native golden hashes differ", bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_native),
    };
    return cmocka_run_group_tests_name("gemm_native", tests, test_env_setup, test_env_teardown);
}
