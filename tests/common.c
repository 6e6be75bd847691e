/* Fixture and helpers shared by the test binaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "internal.h" /* binv_sha256_hex; binv_context_create_tuned (forced paths) */

#ifndef BINV_GOLDEN_DIR
#error "BINV_GOLDEN_DIR must name tests/golden"
#endif

binv_context *test_ctx_tuned(const test_env *env, binv_schedule sched, binv_path path, size_t n,
                             const char *const knobs[][2]) {
    binv_options opt = {sizeof(binv_options), sched, NULL, path};
    binv_context *c = NULL;
    binv_tuning t;
    binv_tuning_from_env(&t);
    for (size_t i = 0; i < n; i++)
        if (binv_tuning_set(&t, knobs[i][0], knobs[i][1]) != 0) {
            fprintf(stderr, "FATAL: %s is not a knob\n", knobs[i][0]);
            return NULL;
        }
    binv_status st = binv_context_create_tuned(env->context, env->device, &opt, &t, &c);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "FATAL: binv_context_create: %d (%s)\n", st, binv_status_string(st));
        return NULL;
    }
    return c;
}

/* A portable context with the knob `var` = `path` (none for NULL). */
static binv_context *make_ctx(test_env *env, binv_schedule sched, const char *var,
                              const char *path) {
    const char *const knob[1][2] = {{var, path}};
    return test_ctx_tuned(env, sched, BINV_PATH_PORTABLE, var ? 1 : 0, knob);
}

int test_env_setup(void **state) {
    test_env *env = calloc(1, sizeof *env);
    if (!env) return -1;
    /* BINV_TEST_DEVICE: gpu, cpu or P:D; default the first device of the first
     * platform (CI: PoCL).  No device fails loudly: never a silent pass. */
    const char *want = getenv("BINV_TEST_DEVICE");
    if (hx_device_open(want && *want ? want : "0:0", &env->dev) != 0) {
        fprintf(stderr, "FATAL: no OpenCL device for the tests (BINV_TEST_DEVICE=%s)\n",
                want ? want : "unset");
        free(env);
        return -1;
    }
    env->platform = env->dev.platform;
    env->device = env->dev.device;
    env->context = env->dev.context;
    env->queue = env->dev.queue;
    cl_int err = CL_SUCCESS;
    clGetDeviceInfo(env->device, CL_DEVICE_NAME, sizeof env->device_name, env->device_name, NULL);
    env->ctx = make_ctx(env, BINV_SCHEDULE_INVARIANT, NULL, NULL);
    env->adaptive = make_ctx(env, BINV_SCHEDULE_ADAPTIVE, NULL, NULL);
    env->forced[0] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_GEMM_PATH", "skinny");
    env->forced[1] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_GEMM_PATH", "splitk");
    env->forced[2] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_GEMM_PATH", "tiled");
    env->forced[3] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_GEMM_PATH", "stream");
    env->forced[4] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_GEMM_FUSE", "0");
    env->rows_forced[0] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_ROWS_PATH", "fused");
    env->rows_forced[1] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_ROWS_PATH", "split");
    env->attn_forced[0] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_ATTN_PATH", "fused");
    env->attn_forced[1] = make_ctx(env, BINV_SCHEDULE_INVARIANT, "BINV_ATTN_PATH", "split");
    *state = env;
    if (err != CL_SUCCESS || !env->ctx || !env->adaptive || !env->forced[0] || !env->forced[1] ||
        !env->forced[2] || !env->forced[3] || !env->forced[4] || !env->rows_forced[0] || !env->rows_forced[1] ||
        !env->attn_forced[0] || !env->attn_forced[1]) {
        fprintf(stderr, "FATAL: test environment setup failed on '%s'\n", env->device_name);
        test_env_teardown(state);
        return -1;
    }
    printf("# device: %s\n", env->device_name);
    return 0;
}

int test_env_teardown(void **state) {
    test_env *env = *state;
    if (!env) return 0;
    binv_context_destroy(env->ctx);
    binv_context_destroy(env->adaptive);
    for (int i = 0; i < 5; i++) binv_context_destroy(env->forced[i]);
    for (int i = 0; i < 2; i++) binv_context_destroy(env->rows_forced[i]);
    for (int i = 0; i < 2; i++) binv_context_destroy(env->attn_forced[i]);
    hx_device_close(&env->dev);
    free(env);
    *state = NULL;
    return 0;
}

cl_mem test_buffer(const test_env *env, size_t bytes, const void *init) {
    cl_int err;
    cl_mem b = clCreateBuffer(env->context, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)init, &err);
    assert_int_equal(err, CL_SUCCESS);
    return b;
}

void test_write(const test_env *env, cl_mem buf, size_t bytes, const void *src) {
    assert_int_equal(clEnqueueWriteBuffer(env->queue, buf, CL_TRUE, 0, bytes, src, 0, NULL, NULL),
                     CL_SUCCESS);
}

void test_read(const test_env *env, cl_mem buf, size_t bytes, void *dst) {
    assert_int_equal(clEnqueueReadBuffer(env->queue, buf, CL_TRUE, 0, bytes, dst, 0, NULL, NULL),
                     CL_SUCCESS);
}

void test_sha256_hex(const void *data, size_t n, char hex[65]) { binv_sha256_hex(data, n, hex); }

int test_golden_check(const char *file, const char *name, const char *hex) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", BINV_GOLDEN_DIR, file);
    const char *update = getenv("BINV_GOLDEN_UPDATE");
    if (update && !strcmp(update, "1")) {
        /* Rewrite: keep other lines, replace or append this one. */
        char *lines = NULL;
        size_t cap = 0, len = 0;
        FILE *f = fopen(path, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char n2[256];
            if (sscanf(line, "%255s", n2) == 1 && !strcmp(n2, name)) continue;
            size_t l = strlen(line);
            if (len + l + 1 > cap) {
                cap = (len + l + 1) * 2;
                lines = realloc(lines, cap);
            }
            memcpy(lines + len, line, l + 1);
            len += l;
        }
        if (f) fclose(f);
        f = fopen(path, "w");
        if (!f) return 0;
        if (lines) fputs(lines, f);
        fprintf(f, "%s %s\n", name, hex);
        fclose(f);
        free(lines);
        return 1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "golden file %s missing\n", path);
        return 0;
    }
    char line[512];
    int ok = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        char n2[256], h2[128];
        if (sscanf(line, "%255s %127s", n2, h2) == 2 && !strcmp(n2, name)) {
            found = 1;
            ok = !strcmp(h2, hex);
            if (!ok) fprintf(stderr, "golden %s: expected %s got %s\n", name, h2, hex);
        }
    }
    fclose(f);
    if (!found) fprintf(stderr, "golden %s: no entry in %s (got %s)\n", name, path, hex);
    return ok;
}
