/* The on-disk program-binary cache under damage and hostile files
 * (src/program_cache.c): truncated, bit-flipped and foreign entries, a FIFO
 * and a symlink named like an entry, entries and directories writable or owned
 * by others, a directory created by the library, and concurrent writers
 * (threads and processes) on one directory.  Every scenario must give
 * BINV_SUCCESS with the bits of a context without cache, never hang (a
 * watchdog turns a blocked build into a failure), and leave a valid entry in
 * place of a damaged one.  The entry format is checked here independently of
 * the library: magic "BINVCL2\n", key, u64 length, SHA-256 of header[0, 80) +
 * binary, binary.
 *
 * The op is binv_swiglu in f32: one small program ("activation"), so each
 * scenario builds exactly one cache entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

extern char **environ;

#define ROWS 3
#define COLS 70
#define WATCHDOG_S 300 /* far above one build; only a hang reaches it */
#define NOBODY 65534   /* a uid that is not ours, for the owner checks (root only) */

static float gate[ROWS * COLS], up[ROWS * COLS], expect[ROWS * COLS];
static const char *self_exe;

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_cache: watchdog: a build blocked (FIFO entry?)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

/* swiglu on ctx through its own queue; returns the status, output in out. */
static binv_status run_swiglu(cl_context clctx, cl_device_id dev, binv_context *ctx, float *out) {
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(clctx, dev, 0, &err);
    if (err != CL_SUCCESS) return err;
    const size_t bytes = sizeof gate;
    cl_mem g = clCreateBuffer(clctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, gate, &err);
    cl_mem u = clCreateBuffer(clctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, up, &err);
    cl_mem y = clCreateBuffer(clctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    binv_status st = g && u && y ? BINV_SUCCESS : BINV_ERROR_OUT_OF_HOST_MEMORY;
    if (st == BINV_SUCCESS)
        st = binv_swiglu(ctx, q, BINV_DTYPE_F32, ROWS, COLS, g, 0, COLS, u, 0, COLS, y, 0, COLS, 0,
                         NULL, NULL);
    if (st == BINV_SUCCESS) st = clEnqueueReadBuffer(q, y, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    if (g) clReleaseMemObject(g);
    if (u) clReleaseMemObject(u);
    if (y) clReleaseMemObject(y);
    clReleaseCommandQueue(q);
    return st;
}

/* A fresh library context on `dir`, one swiglu under the watchdog: must
 * succeed with the uncached bits. */
static void cached_run(const test_env *env, const char *dir) {
    binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, dir, BINV_PATH_PORTABLE};
    binv_context *c = NULL;
    float out[ROWS * COLS];
    alarm(WATCHDOG_S);
    assert_int_equal(binv_context_create(env->context, env->device, &opt, &c), BINV_SUCCESS);
    const binv_status st = run_swiglu(env->context, env->device, c, out);
    binv_context_destroy(c);
    alarm(0);
    if (st != BINV_SUCCESS) fail_msg("swiglu with cache %s: %d", dir, (int)st);
    assert_memory_equal(out, expect, sizeof out);
}

static void make_dir(char *dir) {
    strcpy(dir, "/tmp/binv-test-cache-XXXXXX");
    assert_non_null(mkdtemp(dir)); /* 0700, ours */
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    assert_int_equal(system(cmd), 0);
}

/* Names of files in dir ending in suffix; returns the count, the first in name. */
static int find_files(const char *dir, const char *suffix, char *name, size_t n) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l > s && !strcmp(e->d_name + l - s, suffix)) {
            if (!count && name) snprintf(name, n, "%s/%s", dir, e->d_name);
            count++;
        }
    }
    closedir(d);
    return count;
}

/* The one entry of dir (asserting there is exactly one). */
static void entry_path(const char *dir, char *path, size_t n) {
    assert_int_equal(find_files(dir, ".clbin", path, n), 1);
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void write_file(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(a, 1, na, f), na);
    if (nb) assert_int_equal(fwrite(b, 1, nb, f), nb);
    assert_int_equal(fclose(f), 0);
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* An entry in the current format for key and binary (as a same-user writer
 * would make it). */
static unsigned char *make_entry(const char *key, const unsigned char *bin, size_t n,
                                 size_t *len) {
    unsigned char *e = malloc(112 + n);
    assert_non_null(e);
    memcpy(e, "BINVCL2\n", 8);
    memcpy(e + 8, key, 64);
    for (int i = 0; i < 8; i++) e[72 + i] = (unsigned char)((uint64_t)n >> (8 * i));
    /* SHA-256 over header[0, 80) followed by the binary: hash a contiguous copy. */
    unsigned char *m = malloc(80 + n);
    assert_non_null(m);
    memcpy(m, e, 80);
    memcpy(m + 80, bin, n);
    char hex[65];
    test_sha256_hex(m, 80 + n, hex);
    free(m);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        e[80 + i] = (unsigned char)v;
    }
    memcpy(e + 112, bin, n);
    *len = 112 + n;
    return e;
}

/* The entry at path is a regular 0600 file of ours in the current format,
 * filed under its own key, with a matching length and checksum. */
static void check_entry(const char *path) {
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    if (!S_ISREG(st.st_mode)) fail_msg("%s is not a regular file", path);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    size_t n;
    unsigned char *e = read_file(path, &n);
    assert_true(n > 112);
    assert_memory_equal(e, "BINVCL2\n", 8);
    const char *base = strrchr(path, '/') + 1;
    assert_int_equal(strlen(base), 64 + 6);
    assert_memory_equal(e + 8, base, 64);
    assert_true(get_u64(e + 72) == n - 112);
    size_t len;
    unsigned char *want = make_entry(base, e + 112, n - 112, &len);
    assert_int_equal(len, n);
    assert_memory_equal(e + 80, want + 80, 32);
    free(want);
    free(e);
}

/* A valid binary of another program with the same kernel name and arguments
 * as swiglu's, which writes 42 everywhere: loaded in place of the real one it
 * returns other bits with BINV_SUCCESS. */
static unsigned char *foreign_binary(const test_env *env, size_t *n) {
    static const char src[] =
        "__kernel void act_swiglu(uint rows, uint cols, __global const float *g, ulong go,"
        " ulong lg, __global const float *u, ulong uo, ulong lu, __global float *y, ulong yo,"
        " ulong ly) {\n"
        "  const uint c = get_global_id(0), r = get_global_id(1);\n"
        "  if (c < cols) y[yo + r * ly + c] = 42.0f;\n"
        "}\n";
    const char *s = src;
    cl_int err;
    cl_program p = clCreateProgramWithSource(env->context, 1, &s, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clBuildProgram(p, 1, &env->device, "", NULL, NULL), CL_SUCCESS);
    assert_int_equal(clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof *n, n, NULL), CL_SUCCESS);
    unsigned char *bin = malloc(*n);
    assert_non_null(bin);
    unsigned char *bins[1] = {bin};
    assert_int_equal(clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL), CL_SUCCESS);
    clReleaseProgram(p);
    return bin;
}

/* A populated cache: dir and its one valid entry. */
static void populate(const test_env *env, char *dir, char *path, size_t n) {
    make_dir(dir);
    cached_run(env, dir);
    entry_path(dir, path, n);
    check_entry(path);
}

/* After a damaged entry: the run gives the right bits and a valid entry
 * replaces the damaged one, with no temporary left behind. */
static void expect_repaired(const test_env *env, const char *dir, const char *path) {
    cached_run(env, dir);
    char again[512];
    entry_path(dir, again, sizeof again);
    assert_string_equal(again, path);
    check_entry(path);
    assert_int_equal(find_files(dir, ".tmp", NULL, 0), 0);
}

static void test_truncated(void **state) {
    const test_env *env = *state;
    for (int half = 0; half < 2; half++) {
        char dir[64], path[512];
        populate(env, dir, path, sizeof path);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        const off_t len = half ? st.st_size / 2 : st.st_size - 1;
        assert_int_equal(truncate(path, len), 0);
        printf("# entry of %lld bytes truncated to %lld\n", (long long)st.st_size,
               (long long)len);
        expect_repaired(env, dir, path);
        remove_dir(dir);
    }
}

static void test_bit_flip(void **state) {
    const test_env *env = *state;
    char dir[64], path[512];
    populate(env, dir, path, sizeof path);
    size_t n;
    unsigned char *e = read_file(path, &n);
    e[112 + (n - 112) / 2] ^= 0x10; /* one bit in the middle of the binary */
    write_file(path, e, n, NULL, 0);
    free(e);
    expect_repaired(env, dir, path);
    remove_dir(dir);
}

/* Another program's valid binary filed under the entry's name with the header
 * the cache wrote before entries had a length and checksum (magic, key,
 * binary): it is not loaded. */
static void test_foreign_binary(void **state) {
    const test_env *env = *state;
    char dir[64], path[512];
    populate(env, dir, path, sizeof path);
    size_t n;
    unsigned char *bin = foreign_binary(env, &n);
    unsigned char hdr[72];
    memcpy(hdr, "BINVCL1\n", 8);
    memcpy(hdr + 8, strrchr(path, '/') + 1, 64);
    write_file(path, hdr, sizeof hdr, bin, n);
    free(bin);
    expect_repaired(env, dir, path);
    remove_dir(dir);
}

/* A FIFO named like the entry: opening it must not block the build. */
static void test_fifo(void **state) {
    const test_env *env = *state;
    char dir[64], path[512];
    populate(env, dir, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_repaired(env, dir, path);
    remove_dir(dir);
}

/* A symlink named like the entry (here to a foreign binary outside the
 * directory): not followed, replaced by a regular entry, its target untouched. */
static void test_symlink(void **state) {
    const test_env *env = *state;
    char dir[64], path[512], target[600];
    populate(env, dir, path, sizeof path);
    snprintf(target, sizeof target, "%s.target", dir);
    size_t n;
    unsigned char *bin = foreign_binary(env, &n);
    unsigned char hdr[72];
    memcpy(hdr, "BINVCL1\n", 8);
    memcpy(hdr + 8, strrchr(path, '/') + 1, 64);
    write_file(target, hdr, sizeof hdr, bin, n);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(target, path), 0);
    expect_repaired(env, dir, path);
    size_t tn;
    unsigned char *t = read_file(target, &tn);
    assert_int_equal(tn, sizeof hdr + n);
    assert_memory_equal(t + sizeof hdr, bin, n);
    free(t);
    free(bin);
    assert_int_equal(unlink(target), 0);
    remove_dir(dir);
}

/* A valid entry that others may write, or that another user owns, is not
 * trusted: replaced by our own 0600 entry. */
static void test_entry_mode_owner(void **state) {
    const test_env *env = *state;
    char dir[64], path[512];
    populate(env, dir, path, sizeof path);
    assert_int_equal(chmod(path, 0666), 0);
    expect_repaired(env, dir, path);
    assert_int_equal(chmod(path, 0620), 0);
    expect_repaired(env, dir, path);
    if (chown(path, NOBODY, NOBODY) != 0) {
        printf("# entry owner check skipped: chown: %s (needs root)\n", strerror(errno));
    } else {
        expect_repaired(env, dir, path); /* check_entry: owned by us again */
    }
    remove_dir(dir);
}

/* A directory others may write to, or another user owns, is not used at all:
 * a correctly checksummed foreign entry planted there is not loaded, nothing
 * is written there, and its mode is left as it is. */
static void test_directory_refused(void **state) {
    const test_env *env = *state;
    for (int owner = 0; owner < 2; owner++) {
        char dir[64], path[512];
        populate(env, dir, path, sizeof path); /* for the entry's name */
        assert_int_equal(unlink(path), 0);
        if (owner) {
            if (chown(dir, NOBODY, NOBODY) != 0) {
                printf("# directory owner check skipped: chown: %s (needs root)\n",
                       strerror(errno));
                remove_dir(dir);
                continue;
            }
        } else {
            assert_int_equal(chmod(dir, 0777), 0);
        }
        cached_run(env, dir); /* nothing is written to a refused directory */
        assert_int_equal(find_files(dir, ".clbin", NULL, 0), 0);
        assert_int_equal(find_files(dir, ".tmp", NULL, 0), 0);
        /* a planted entry (checksum right, owned by us, 0600) is not loaded */
        size_t n, len;
        unsigned char *bin = foreign_binary(env, &n);
        unsigned char *e = make_entry(strrchr(path, '/') + 1, bin, n, &len);
        write_file(path, e, len, NULL, 0);
        assert_int_equal(chmod(path, 0600), 0);
        cached_run(env, dir);
        size_t got;
        unsigned char *now = read_file(path, &got);
        assert_int_equal(got, len);
        assert_memory_equal(now, e, len); /* left alone */
        free(now);
        free(e);
        free(bin);
        struct stat st;
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, owner ? 0700 : 0777);
        remove_dir(dir);
    }
}

/* A directory the library creates is 0700 whatever the umask allows. */
static void test_directory_created(void **state) {
    const test_env *env = *state;
    char dir[64], sub[128], path[512];
    make_dir(dir);
    snprintf(sub, sizeof sub, "%s/cache", dir);
    const mode_t old = umask(022);
    cached_run(env, sub);
    umask(old);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    entry_path(sub, path, sizeof path);
    check_entry(path);
    remove_dir(dir);
}

/* ---- concurrent writers ----------------------------------------------------- */

#define THREADS 4
#define CHILDREN 2
#define ROUNDS 3

typedef struct writer_arg {
    const test_env *env;
    const char *dir;
    pthread_barrier_t *barrier;
    int bad; /* rounds with a failure or other bits */
} writer_arg;

static void *writer(void *p) {
    writer_arg *a = p;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(a->barrier);
        binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, a->dir, BINV_PATH_PORTABLE};
        binv_context *c = NULL;
        float out[ROWS * COLS];
        if (binv_context_create(a->env->context, a->env->device, &opt, &c) != BINV_SUCCESS ||
            run_swiglu(a->env->context, a->env->device, c, out) != BINV_SUCCESS ||
            memcmp(out, expect, sizeof out))
            a->bad++;
        binv_context_destroy(c);
    }
    return NULL;
}

/* Child process mode (test_cache --writer DIR): its own OpenCL setup, ROUNDS
 * fresh contexts on DIR; exit 0 when every round had the uncached bits. */
static int child_writer(const char *dir) {
    void *state = NULL;
    if (test_env_setup(&state)) return 2;
    test_env *env = state;
    float ref[ROWS * COLS], out[ROWS * COLS];
    int bad = run_swiglu(env->context, env->device, env->ctx, ref) != BINV_SUCCESS;
    for (int r = 0; r < ROUNDS && !bad; r++) {
        binv_options opt = {sizeof opt, BINV_SCHEDULE_INVARIANT, dir, BINV_PATH_PORTABLE};
        binv_context *c = NULL;
        bad = binv_context_create(env->context, env->device, &opt, &c) != BINV_SUCCESS ||
              run_swiglu(env->context, env->device, c, out) != BINV_SUCCESS ||
              memcmp(out, ref, sizeof out);
        binv_context_destroy(c);
    }
    test_env_teardown(&state);
    return bad;
}

static void test_concurrent_writers(void **state) {
    const test_env *env = *state;
    char dir[64], path[512];
    make_dir(dir);
    pid_t kids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++) {
        char *argv[] = {(char *)self_exe, "--writer", dir, NULL};
        assert_int_equal(posix_spawn(&kids[i], self_exe, NULL, NULL, argv, environ), 0);
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, THREADS);
    pthread_t th[THREADS];
    writer_arg args[THREADS];
    alarm(WATCHDOG_S);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (writer_arg){env, dir, &barrier, 0};
        assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    for (int i = 0; i < CHILDREN; i++) {
        int ws = 0;
        assert_int_equal(waitpid(kids[i], &ws, 0), kids[i]);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            printf("# writer process %d: status 0x%x\n", i, ws);
            bad++;
        }
    }
    alarm(0);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(bad, 0);
    entry_path(dir, path, sizeof path);
    check_entry(path);
    assert_int_equal(find_files(dir, ".tmp", NULL, 0), 0);
    cached_run(env, dir); /* and the entry left behind loads */
    remove_dir(dir);
}

static int group_setup(void **state) {
    const int st = test_env_setup(state);
    if (st) return st;
    test_env *env = *state;
    hx_fill_wide(BINV_DTYPE_F32, gate, ROWS * COLS, 11);
    hx_fill_wide(BINV_DTYPE_F32, up, ROWS * COLS, 12);
    /* the bits without any cache */
    if (run_swiglu(env->context, env->device, env->ctx, expect) != BINV_SUCCESS) return -1;
    return 0;
}

int main(int argc, char **argv) {
    self_exe = access("/proc/self/exe", X_OK) == 0 ? "/proc/self/exe" : argv[0];
    signal(SIGALRM, on_alarm);
    if (argc == 3 && !strcmp(argv[1], "--writer")) {
        hx_fill_wide(BINV_DTYPE_F32, gate, ROWS * COLS, 11);
        hx_fill_wide(BINV_DTYPE_F32, up, ROWS * COLS, 12);
        return child_writer(argv[2]);
    }
    /* BINV_TEST_FILTER: run only the matching tests (e.g. one scenario against
     * an old library, where a hang or abort ends the process). */
    if (getenv("BINV_TEST_FILTER")) cmocka_set_test_filter(getenv("BINV_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bit_flip),
        cmocka_unit_test(test_foreign_binary),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_symlink),
        cmocka_unit_test(test_entry_mode_owner),
        cmocka_unit_test(test_directory_refused),
        cmocka_unit_test(test_directory_created),
        cmocka_unit_test(test_concurrent_writers),
    };
    return cmocka_run_group_tests_name("cache", tests, group_setup, test_env_teardown);
}
