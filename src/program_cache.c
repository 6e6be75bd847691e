/* On-disk program-binary cache: <cache_dir>/<key>.clbin, key = 64 hex digits
 * of the SHA-256 computed in program.c.  Every failure is silent ("not
 * cached", a message under BINV_DEBUG only) so that the caller falls back to a
 * compile.
 *
 * What the cache trusts, and why.  A program binary is native code (PoCL: a
 * shared object the driver dlopen()s into the process; other drivers: their
 * own machine code), and no OpenCL driver validates one before it parses it:
 * PoCL asserts (SIGABRT) on a binary cut short by one byte.  So nothing reaches
 * clCreateProgramWithBinary unless:
 *   - the directory is a directory owned by the effective user and not
 *     writable by group or others (created 0700 when absent).  Anyone else who
 *     can write there could plant native code; such a directory is not used at
 *     all, for reading or writing;
 *   - the entry is opened without following a symlink and without blocking
 *     (O_NOFOLLOW | O_NONBLOCK: a FIFO or device named like an entry must not
 *     hang the build), and fstat says: a regular file, owned by the effective
 *     user, not group/world-writable, of a size within the bounds below;
 *   - its header has this format's magic, the key it is filed under (a file
 *     renamed from another key is refused), the exact binary length (the file
 *     size must equal header + length) and a SHA-256 over the header and the
 *     binary that matches what was read.
 * The checksum protects against damage (truncation by a full disk or a crash
 * of an older writer, flipped bits, a file of another format or version, a
 * binary copied in from another key), not against an attacker running as the
 * same user: anyone who can write our files can compute the SHA too, and can
 * equally well change the library or the process itself.  It is a checksum,
 * not a signature; the ownership and mode checks are what keep other users out.
 *
 * A refused entry is removed (when it is still the file that was examined;
 * otherwise, or when it cannot be removed, it is ignored) and the caller
 * compiles and stores a fresh one.  Writers create a unique temporary file
 * (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600), write and fsync it, and rename it
 * over the entry, so a reader sees either the old entry or the complete new
 * one; concurrent writers of one key each install a complete, valid file and
 * the last rename wins. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Entry layout (integers little-endian):
 *   [0, 8)      magic "BINVCL2\n" (version 1 had no length and no checksum)
 *   [8, 72)     the key, 64 lowercase hex digits
 *   [72, 80)    binary length n (u64)
 *   [80, 112)   SHA-256 of bytes [0, 80) followed by the binary
 *   [112, 112+n) the binary */
#define MAGIC "BINVCL2\n"
#define KEY_AT 8
#define LEN_AT 72
#define SHA_AT 80
#define HEADER 112
/* Far above any program binary of this library (PoCL's are a few MiB; NVIDIA's
 * PTX text less): a larger file is not one of ours and is not read. */
#define MAX_BINARY ((size_t)256 << 20)

static int valid_key(const char *key) {
    for (int i = 0; i < 64; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'))) return 0;
    return key[64] == '\0';
}

/* Opens the cache directory (creating it 0700 when `create` and it is absent)
 * and checks that only this user can write to it.  Returns a descriptor or -1. */
static int open_dir(const binv_context *ctx, int create) {
    if (create && mkdir(ctx->cache_dir, 0700) != 0 && errno != EEXIST) {
        binv_debug(ctx, "binary cache: cannot create %s: %s", ctx->cache_dir, strerror(errno));
        return -1;
    }
    int fd = open(ctx->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (create || errno != ENOENT)
            binv_debug(ctx, "binary cache: cannot open %s: %s", ctx->cache_dir, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) why = strerror(errno);
    else if (st.st_uid != geteuid()) why = "owned by another user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH)) why = "writable by group or others";
    if (why) {
        binv_debug(ctx, "binary cache: directory %s refused (%s); compiling without the cache",
                   ctx->cache_dir, why);
        close(fd);
        return -1;
    }
    return fd;
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* SHA-256 of header bytes [0, SHA_AT) and the binary. */
static void entry_digest(const unsigned char *hdr, const unsigned char *bin, size_t n,
                         unsigned char out[32]) {
    binv_sha256 s;
    binv_sha256_init(&s);
    binv_sha256_update(&s, hdr, SHA_AT);
    binv_sha256_update(&s, bin, n);
    binv_sha256_final(&s, out);
}

/* Removes a refused entry if the name still refers to the file examined (a
 * concurrent writer may have renamed a fresh entry into place meanwhile):
 * `seen` is its fstat, or NULL when it could not be opened (a symlink). */
static void remove_entry(const binv_context *ctx, int dfd, const char *name,
                         const struct stat *seen) {
    struct stat now;
    if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0) return;
    if (seen ? (now.st_dev != seen->st_dev || now.st_ino != seen->st_ino) : S_ISREG(now.st_mode))
        return;
    if (unlinkat(dfd, name, S_ISDIR(now.st_mode) ? AT_REMOVEDIR : 0) != 0)
        binv_debug(ctx, "binary cache: cannot remove %s/%s: %s", ctx->cache_dir, name,
                   strerror(errno));
}

static int read_all(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        got += (size_t)r;
    }
    return 1;
}

static int write_all(int fd, const unsigned char *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, buf + put, n - put);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        put += (size_t)w;
    }
    return 1;
}

int binv_cache_load(const binv_context *ctx, const char *key_hex, unsigned char **data,
                    size_t *size) {
    if (!ctx->cache_dir || !valid_key(key_hex)) return 0;
    const int dfd = open_dir(ctx, 0);
    if (dfd < 0) return 0;
    char name[80];
    snprintf(name, sizeof name, "%s.clbin", key_hex);
    const int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        /* ELOOP: a symlink; ENXIO: a socket or a FIFO-like special file. */
        if (errno == ELOOP || errno == ENXIO) {
            binv_debug(ctx, "binary cache: %s/%s refused (%s)", ctx->cache_dir, name,
                       strerror(errno));
            remove_entry(ctx, dfd, name, NULL);
        }
        close(dfd);
        return 0;
    }
    struct stat st;
    const char *why = NULL;
    unsigned char *buf = NULL;
    size_t n = 0;
    const int have_st = fstat(fd, &st) == 0;
    if (!have_st) why = "fstat failed";
    else if (!S_ISREG(st.st_mode)) why = "not a regular file";
    else if (st.st_uid != geteuid()) why = "owned by another user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH)) why = "writable by group or others";
    else if (st.st_size <= HEADER || (uint64_t)st.st_size - HEADER > MAX_BINARY)
        why = "size out of range";
    else if (!(buf = malloc((size_t)st.st_size))) why = "out of host memory";
    else if (!read_all(fd, buf, (size_t)st.st_size)) why = "short read";
    else {
        n = (size_t)st.st_size - HEADER;
        unsigned char digest[32];
        if (memcmp(buf, MAGIC, 8)) why = "not an entry of this format";
        else if (memcmp(buf + KEY_AT, key_hex, 64)) why = "filed under another key";
        else if (get_u64(buf + LEN_AT) != (uint64_t)n) why = "length does not match the file size";
        else if (entry_digest(buf, buf + HEADER, n, digest), memcmp(digest, buf + SHA_AT, 32))
            why = "checksum mismatch";
    }
    close(fd);
    if (why) {
        free(buf);
        binv_debug(ctx, "binary cache: %s/%s refused (%s)", ctx->cache_dir, name, why);
        /* Host memory shortage says nothing about the file, and without its
         * fstat there is no telling whether the name still refers to it: keep it. */
        if (have_st && strcmp(why, "out of host memory")) remove_entry(ctx, dfd, name, &st);
        close(dfd);
        return 0;
    }
    close(dfd);
    memmove(buf, buf + HEADER, n);
    *data = buf;
    *size = n;
    return 1;
}

void binv_cache_store(const binv_context *ctx, const char *key_hex, const unsigned char *data,
                      size_t size) {
    if (!ctx->cache_dir || !valid_key(key_hex) || size == 0 || size > MAX_BINARY) return;
    const int dfd = open_dir(ctx, 1);
    if (dfd < 0) return;
    unsigned char hdr[HEADER];
    memcpy(hdr, MAGIC, 8);
    memcpy(hdr + KEY_AT, key_hex, 64);
    put_u64(hdr + LEN_AT, (uint64_t)size);
    entry_digest(hdr, data, size, hdr + SHA_AT);

    /* O_EXCL makes the temporary name ours even if the guess collides (then
     * another is tried); pid, a process-wide counter and the clock make a
     * collision between threads or processes unlikely. */
    static atomic_ulong counter;
    char name[80], tmp[160];
    snprintf(name, sizeof name, "%s.clbin", key_hex);
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        snprintf(tmp, sizeof tmp, "%s.%ld.%lu.%lx.tmp", name, (long)getpid(),
                 (unsigned long)atomic_fetch_add(&counter, 1), (unsigned long)t.tv_nsec);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        binv_debug(ctx, "binary cache: cannot create a file in %s: %s", ctx->cache_dir,
                   strerror(errno));
        close(dfd);
        return;
    }
    /* The mode is exact whatever the umask (it can only have removed bits). */
    int ok = fchmod(fd, 0600) == 0 && write_all(fd, hdr, HEADER) && write_all(fd, data, size) &&
             fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || renameat(dfd, tmp, dfd, name) != 0) {
        binv_debug(ctx, "binary cache: could not store %s/%s: %s", ctx->cache_dir, name,
                   strerror(errno));
        unlinkat(dfd, tmp, 0);
        close(dfd);
        return;
    }
    fsync(dfd); /* the rename itself; a failure only costs a later compile */
    close(dfd);
    binv_debug(ctx, "binary cache: stored %s/%s (%zu bytes)", ctx->cache_dir, name, size);
}
