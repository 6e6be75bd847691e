/* The runtime: context creation and its arguments, status strings, the
 * program-binary cache (hit, corrupt file, unwritable directory), build
 * failures and their log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h"

static void test_status_strings(void **state) {
    (void)state;
    const binv_status all[] = {BINV_SUCCESS, BINV_ERROR_INVALID_ARGUMENT,
                               BINV_ERROR_INVALID_DIMENSION, BINV_ERROR_INVALID_LEADING_DIMENSION,
                               BINV_ERROR_BUFFER_TOO_SMALL, BINV_ERROR_UNSUPPORTED_DTYPE,
                               BINV_ERROR_UNSUPPORTED_DEVICE, BINV_ERROR_BUILD_FAILED,
                               BINV_ERROR_OUT_OF_HOST_MEMORY, BINV_ERROR_INVALID_ENUM,
                               BINV_ERROR_CONTEXT_MISMATCH, BINV_ERROR_ALIASING,
                               BINV_ERROR_INVALID_VALUE};
    size_t n = sizeof all / sizeof *all;
    for (size_t i = 0; i < n; i++) {
        assert_true(all[i] == 0 || all[i] <= -2000); /* own range, apart from OpenCL's */
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(all[i], all[j]);
            assert_string_not_equal(binv_status_string(all[i]), binv_status_string(all[j]));
        }
    }
    assert_string_equal(binv_status_string(-2000), "invalid argument");
    assert_non_null(strstr(binv_status_string(CL_OUT_OF_RESOURCES), "OpenCL"));
    assert_string_equal(binv_status_string(-1999999), "unknown status");
    assert_string_equal(binv_version_string(), BINV_VERSION_STRING);
    assert_int_equal(binv_gemm_chunk_size(BINV_DTYPE_F32, 4096), 512);
    assert_int_equal(binv_gemm_chunk_size(BINV_DTYPE_BF16, 14336), 512);
    assert_int_equal(binv_gemm_chunk_size(BINV_DTYPE_F16, 1000), 128);
    assert_int_equal(binv_gemm_chunk_size(BINV_DTYPE_F32, 512), 64);
    assert_int_equal(binv_gemm_chunk_size(BINV_DTYPE_F32, 1), 64);
    assert_int_equal(binv_gemm_chunk_size((binv_dtype)9, 4096), 0);
}

static void test_create_arguments(void **state) {
    test_env *env = *state;
    binv_context *c = (binv_context *)0x1;
    assert_int_equal(binv_context_create(env->context, env->device, NULL, NULL),
                     BINV_ERROR_INVALID_ARGUMENT);
    assert_int_equal(binv_context_create(NULL, env->device, NULL, &c), BINV_ERROR_INVALID_ARGUMENT);
    assert_null(c);
    assert_int_equal(binv_context_create(env->context, NULL, NULL, &c), BINV_ERROR_INVALID_ARGUMENT);
    binv_options bad = {sizeof(binv_options), (binv_schedule)5, NULL, BINV_PATH_PORTABLE};
    assert_int_equal(binv_context_create(env->context, env->device, &bad, &c), BINV_ERROR_INVALID_ENUM);
    assert_null(c);
    binv_options tiny = {2, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    assert_int_equal(binv_context_create(env->context, env->device, &tiny, &c),
                     BINV_ERROR_INVALID_ARGUMENT);
    /* An older, shorter options struct (only struct_size and schedule). */
    binv_options old = {offsetof(binv_options, cache_dir), BINV_SCHEDULE_ADAPTIVE, "ignored", BINV_PATH_PORTABLE};
    assert_int_equal(binv_context_create(env->context, env->device, &old, &c), BINV_SUCCESS);
    assert_string_equal(binv_context_last_error(c), "");
    binv_context_destroy(c);
    binv_context_destroy(NULL); /* NULL-safe */
    assert_non_null(binv_context_last_error(NULL));
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l > s && !strcmp(e->d_name + l - s, suffix)) n++;
    }
    closedir(d);
    return n;
}

static void run_small_gemm(test_env *env, binv_context *ctx, float out[6]) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[9] = {1, 0, 2, 0, 1, 3, 1, 1, 1};
    cl_mem A = test_buffer(env, sizeof a, a), B = test_buffer(env, sizeof b, b);
    cl_mem C = test_buffer(env, 6 * 4, NULL);
    assert_int_equal(binv_gemm(ctx, env->queue, BINV_DTYPE_F32, BINV_NO_TRANS, BINV_NO_TRANS, 2, 3,
                               3, 1.0f, A, 0, 3, B, 0, 3, 0.0f, C, 0, 3, 0, NULL, NULL),
                     BINV_SUCCESS);
    test_read(env, C, 6 * 4, out);
    clReleaseMemObject(A); clReleaseMemObject(B); clReleaseMemObject(C);
}

static void test_binary_cache(void **state) {
    test_env *env = *state;
    char dir[] = "/tmp/binv-cache-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, dir, BINV_PATH_PORTABLE};
    const float expect[6] = {4, 5, 11, 10, 11, 29};
    float out[6];
    for (int round = 0; round < 3; round++) {
        binv_context *c;
        assert_int_equal(binv_context_create(env->context, env->device, &opt, &c), BINV_SUCCESS);
        run_small_gemm(env, c, out);
        assert_memory_equal(out, expect, sizeof out);
        binv_context_destroy(c);
        assert_int_equal(count_files(dir, ".clbin"), 1); /* one program, stored once */
        assert_int_equal(count_files(dir, ".tmp"), 0);   /* no temporary left behind */
        if (round == 1) {
            /* Corrupt the cached binary: the next context must silently compile. */
            DIR *d = opendir(dir);
            struct dirent *e;
            while ((e = readdir(d)))
                if (strstr(e->d_name, ".clbin")) {
                    char p[512];
                    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                    FILE *f = fopen(p, "r+b");
                    fseek(f, 80, SEEK_SET);
                    fputs("garbage garbage garbage", f);
                    fclose(f);
                }
            closedir(d);
        }
    }
    /* An unusable cache directory is no error either. */
    binv_options nowhere = {sizeof opt, BINV_SCHEDULE_INVARIANT, "/proc/binv-no-such-dir/x", BINV_PATH_PORTABLE};
    binv_context *c;
    assert_int_equal(binv_context_create(env->context, env->device, &nowhere, &c), BINV_SUCCESS);
    run_small_gemm(env, c, out);
    assert_memory_equal(out, expect, sizeof out);
    binv_context_destroy(c);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_build_failure(void **state) {
    test_env *env = *state;
    cl_program p = NULL;
    binv_status st = binv_program_get(env->ctx, "broken", "__kernel void f(void) { undeclared_x = 1; }",
                                      "", &p);
    assert_int_equal(st, BINV_ERROR_BUILD_FAILED);
    assert_null(p);
    const char *msg = binv_context_last_error(env->ctx);
    assert_non_null(strstr(msg, "Build log"));
    assert_non_null(strstr(msg, "undeclared_x"));
}

/* The sm_90a retargeting of the native wgmma program (src/program.c): the
 * target directive gains its "a", every marker goes, nothing else changes;
 * PTX for another target is refused. */
static void test_ptx_sm90a(void **state) {
    (void)state;
    static const char in[] = "//\n.version 9.0\n.target sm_90, texmode_independent\n"
                             "\t// begin inline asm\n\t// BINV_SM90A wgmma.fence.sync.aligned;\n"
                             "\tbar.sync 0; // BINV_SM90A wgmma.commit_group.sync.aligned;\n"
                             "\t// BINV_SM90";
    static const char want[] = "//\n.version 9.0\n.target sm_90a, texmode_independent\n"
                               "\t// begin inline asm\n\twgmma.fence.sync.aligned;\n"
                               "\tbar.sync 0; wgmma.commit_group.sync.aligned;\n"
                               "\t// BINV_SM90";
    char out[sizeof in + 1];
    size_t n = 0;
    assert_int_equal(binv_ptx_sm90a(in, sizeof in - 1, out, &n), 0);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    static const char bare[] = "//\n.version 9.0\n.target sm_90\n";
    assert_int_equal(binv_ptx_sm90a(bare, sizeof bare - 1, out, &n), 0);
    assert_memory_equal(out, "//\n.version 9.0\n.target sm_90a\n", n);
    static const char *const refused[] = {"//\n.target sm_80, texmode_independent\n",
                                          "//\n.target sm_90a\n", "//\n.target sm_900\n",
                                          "not PTX", ""};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        assert_int_equal(binv_ptx_sm90a(refused[i], strlen(refused[i]), out, &n), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ptx_sm90a),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_create_arguments),
        cmocka_unit_test(test_binary_cache),
        cmocka_unit_test(test_build_failure),
    };
    return cmocka_run_group_tests_name("runtime", tests, test_env_setup, test_env_teardown);
}
