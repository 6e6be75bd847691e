/* The tuning knobs (src/tuning.c): each BINV_* variable's syntax and checks
 * through binv_tuning_set (invalid values give the library's choice, as the
 * environment always did), the environment read once at context creation,
 * the testing hook binv_context_create_tuned, and the kernel-argument count
 * check of binv_kernel_acquire (src/program.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

static void test_defaults(void **state) {
    (void)state;
    binv_tuning t;
    binv_tuning_defaults(&t);
    assert_int_equal(t.gemm_path, BINV_GEMM_PATH_AUTO);
    assert_int_equal(t.rows_path, 0);
    assert_int_equal(t.attn_path, 0);
    assert_int_equal(t.gemm_tglob, -1);
    assert_int_equal(t.gemm_small_m, 64);
    assert_int_equal(t.native_small_m, 64);
    assert_false(t.debug || t.soft_divsqrt || t.gemm_unfused || t.gemm_no_nt ||
                 t.native_no_wgmma || t.native_wg_given || t.native_no_ldm);
    assert_false(t.gemm_tile.set || t.gemm_skinny.set || t.gemm_stream.set ||
                 t.native_stream.set || t.native_wg.set || t.native_shape.set ||
                 t.attn_shape.set);
    assert_string_equal(t.extra_defines, "");
    assert_int_equal(binv_tuning_set(&t, "BINV_NOT_A_KNOB", "1"), -1);
}

/* Every knob with a valid value, then with invalid ones. */
static void test_values(void **state) {
    (void)state;
    binv_tuning t;
    binv_tuning_defaults(&t);
    static const char *const ok[][2] = {
        {"BINV_DEBUG", "1"},           {"BINV_SOFT_DIVSQRT", "yes"},
        {"BINV_GEMM_PATH", "stream"},  {"BINV_GEMM_FUSE", "0"},
        {"BINV_GEMM_NT", "0"},         {"BINV_GEMM_TGLOB", "1"},
        {"BINV_GEMM_SMALL_M", "12"},   {"BINV_GEMM_TILE", "64,128,16,8,8"},
        {"BINV_GEMM_SKINNY", "64,4,16"}, {"BINV_GEMM_STREAM", "128,4,2"},
        {"BINV_NATIVE_SMALL_M", "0"},  {"BINV_NATIVE_STREAM", "2,4,256"},
        {"BINV_NATIVE_WGMMA", "0"},    {"BINV_NATIVE_WG", "32,1,2,3,128,0,2,2"},
        {"BINV_NATIVE_LDM", "0"},      {"BINV_NATIVE_SHAPE", "8,2,2"},
        {"BINV_ROWS_PATH", "split"},   {"BINV_ATTN_PATH", "fused"},
        {"BINV_ATTN_SHAPE", "2,1,16,64"}, {"BINV_EXTRA_DEFINES", "-DBINV_NO_UNROLL"}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        assert_int_equal(binv_tuning_set(&t, ok[i][0], ok[i][1]), 0);
    assert_true(t.debug && t.soft_divsqrt && t.gemm_unfused && t.gemm_no_nt && t.native_no_wgmma &&
                t.native_no_ldm);
    assert_int_equal(t.gemm_path, BINV_GEMM_PATH_STREAM);
    assert_int_equal(t.gemm_tglob, 1);
    assert_int_equal(t.gemm_small_m, 12);
    assert_true(t.gemm_tile.set && t.gemm_tile.bm == 64 && t.gemm_tile.bn == 128 &&
                t.gemm_tile.bk == 16 && t.gemm_tile.rm == 8 && t.gemm_tile.rn == 8);
    assert_true(t.gemm_skinny.set && t.gemm_skinny.sn == 64 && t.gemm_skinny.smr == 4 &&
                t.gemm_skinny.sk == 16);
    assert_true(t.gemm_stream.set && t.gemm_stream.tn == 128 && t.gemm_stream.tr == 4 &&
                t.gemm_stream.nc == 2 && !t.gemm_stream.has_tv);
    assert_int_equal(t.native_small_m, 0);
    assert_true(t.native_stream.set && t.native_stream.swp == 2 && t.native_stream.sks == 256);
    assert_true(t.native_wg_given && t.native_wg.set && t.native_wg.v[4] == 128 &&
                t.native_wg.v[7] == 2);
    assert_true(t.native_shape.set && t.native_shape.nj == 8 && t.native_shape.swz == 0);
    assert_int_equal(t.rows_path, 2);
    assert_int_equal(t.attn_path, 1);
    assert_true(t.attn_shape.set && t.attn_shape.gb == 2 && t.attn_shape.j == 16);
    assert_string_equal(t.extra_defines, "-DBINV_NO_UNROLL");

    /* Invalid values: the library's choice again (BINV_NATIVE_WG stays
     * "given": a refused sm_90a build is then an error, as before). */
    static const char *const bad[][2] = {
        {"BINV_DEBUG", "0"},              {"BINV_SOFT_DIVSQRT", ""},
        {"BINV_GEMM_PATH", "fast"},       {"BINV_GEMM_FUSE", "1"},
        {"BINV_GEMM_NT", "no"},           {"BINV_GEMM_TGLOB", "2"},
        {"BINV_GEMM_SMALL_M", "2000"},    {"BINV_GEMM_TILE", "64,128,16,6,8"},
        {"BINV_GEMM_SKINNY", "64,4,12"},  {"BINV_GEMM_STREAM", "100,4,2"},
        {"BINV_NATIVE_SMALL_M", "12x"},   {"BINV_NATIVE_STREAM", "3,4,256"},
        {"BINV_NATIVE_WGMMA", "1"},       {"BINV_NATIVE_WG", "32,1,2,3,96,0,2"},
        {"BINV_NATIVE_LDM", "1"},         {"BINV_NATIVE_SHAPE", "8,3,2"},
        {"BINV_ROWS_PATH", "both"},       {"BINV_ATTN_PATH", ""},
        {"BINV_ATTN_SHAPE", "2,1,16"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(binv_tuning_set(&t, bad[i][0], bad[i][1]), 0);
    binv_tuning d;
    binv_tuning_defaults(&d);
    d.native_wg_given = 1;
    snprintf(d.extra_defines, sizeof d.extra_defines, "-DBINV_NO_UNROLL");
    assert_memory_equal(&t, &d, sizeof t);
    /* strtol's reading, as the variable always had: "12x" is 12. */
    assert_int_equal(binv_tuning_set(&t, "BINV_GEMM_SMALL_M", "12x"), 0);
    assert_int_equal(t.gemm_small_m, 12);
}

/* binv_context_create reads the environment once; later changes reach only
 * later contexts.  (The one test that sets the environment: it tests the
 * environment's reading itself.) */
static void test_read_once(void **state) {
    test_env *env = *state;
    const binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    const char *was = getenv("BINV_ROWS_PATH");
    char *saved = was ? strdup(was) : NULL;
    setenv("BINV_ROWS_PATH", "split", 1);
    binv_context *c = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, &opt, &c), BINV_SUCCESS);
    setenv("BINV_ROWS_PATH", "fused", 1);
    assert_int_equal(c->tuning.rows_path, 2);
    binv_context *later = NULL;
    assert_int_equal(binv_context_create(env->context, env->device, &opt, &later), BINV_SUCCESS);
    assert_int_equal(later->tuning.rows_path, 1);
    if (saved) setenv("BINV_ROWS_PATH", saved, 1);
    else unsetenv("BINV_ROWS_PATH");
    free(saved);
    binv_context_destroy(c);
    binv_context_destroy(later);

    /* The hook: what it is given, whatever the environment says. */
    static const char *const knobs[2][2] = {{"BINV_GEMM_PATH", "tiled"}, {"BINV_GEMM_FUSE", "0"}};
    binv_context *h = test_ctx_tuned(env, BINV_SCHEDULE_INVARIANT, BINV_PATH_PORTABLE, 2, knobs);
    assert_non_null(h);
    assert_int_equal(h->tuning.gemm_path, BINV_GEMM_PATH_TILED);
    assert_int_equal(h->gemm_fuse, 0);
    binv_context_destroy(h);
}

/* A launch whose argument count is not the kernel's fails in one place,
 * before anything is enqueued. */
static void test_argument_count(void **state) {
    test_env *env = *state;
    cl_program p = NULL;
    assert_int_equal(binv_program_get(env->ctx, "argcount",
                                      "__kernel void two(__global int *x, int v) { x[0] = v; }",
                                      "", &p),
                     BINV_SUCCESS);
    cl_mem x = test_buffer(env, sizeof(cl_int), NULL);
    cl_int v = 7;
    const binv_arg one[] = {BINV_ARG(x)};
    const binv_arg two[] = {BINV_ARG(x), BINV_ARG(v)};
    const size_t gws[1] = {1};
    binv_status st = binv_kernel_launch(env->ctx, env->queue, p, "two", one, BINV_NARGS(one), 1,
                                        gws, NULL, 0, NULL, NULL);
    assert_int_equal(st, BINV_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(binv_context_last_error(env->ctx), "takes 2 arguments; 1 given"));
    assert_int_equal(binv_kernel_launch(env->ctx, env->queue, p, "two", two, BINV_NARGS(two), 1,
                                        gws, NULL, 0, NULL, NULL),
                     BINV_SUCCESS);
    cl_int got = 0;
    test_read(env, x, sizeof got, &got);
    assert_int_equal(got, 7);
    clReleaseMemObject(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_read_once),
        cmocka_unit_test(test_argument_count),
    };
    return cmocka_run_group_tests_name("tuning", tests, test_env_setup, test_env_teardown);
}
