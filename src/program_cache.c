/* On-disk program-binary cache: <cache_dir>/<sha256>.clbin.  Every failure
 * is silent ("not cached") so that the caller falls back to a compile.
 * Writes go to a unique temporary name in the same directory and are renamed
 * into place, so a reader never sees a partial file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define MAGIC "BINVCL1\n"

static int path_for(const binv_context *ctx, const char *key, char *path, size_t n) {
    int w = snprintf(path, n, "%s/%s.clbin", ctx->cache_dir, key);
    return w > 0 && (size_t)w < n;
}

int binv_cache_load(const binv_context *ctx, const char *key_hex, unsigned char **data,
                    size_t *size) {
    char path[4096];
    if (!ctx->cache_dir || !path_for(ctx, key_hex, path, sizeof path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    unsigned char *buf = NULL;
    long len = -1;
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, MAGIC, 8) &&
             fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 8 + 64 &&
             fseek(f, 8, SEEK_SET) == 0;
    if (ok) {
        /* Layout: magic, hex key (64 bytes, guards against renamed files), binary. */
        size_t n = (size_t)len - 8;
        buf = malloc(n);
        ok = buf && fread(buf, 1, n, f) == n && !memcmp(buf, key_hex, 64);
        if (ok) {
            memmove(buf, buf + 64, n - 64);
            *data = buf;
            *size = n - 64;
        }
    }
    fclose(f);
    if (!ok) free(buf);
    return ok;
}

void binv_cache_store(const binv_context *ctx, const char *key_hex, const unsigned char *data,
                      size_t size) {
    char path[4096], tmp[4200];
    if (!ctx->cache_dir || !path_for(ctx, key_hex, path, sizeof path)) return;
    mkdir(ctx->cache_dir, 0777); /* may exist already; any other failure shows below */
    static const char hexd[] = "0123456789abcdef";
    unsigned r = (unsigned)(uintptr_t)&r ^ (unsigned)getpid();
    char suffix[9];
    for (int i = 0; i < 8; i++) suffix[i] = hexd[(r >> (4 * i)) & 15];
    suffix[8] = '\0';
    snprintf(tmp, sizeof tmp, "%s.%ld.%s.tmp", path, (long)getpid(), suffix);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        binv_debug(ctx, "binary cache: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    int ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(key_hex, 1, 64, f) == 64 &&
             fwrite(data, 1, size, f) == size;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        binv_debug(ctx, "binary cache: could not store %s", path);
        return;
    }
    binv_debug(ctx, "binary cache: stored %s (%zu bytes)", path, size);
}
