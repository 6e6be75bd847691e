/* Lazily built programs (one per family and define-set), cached in the
 * context; pools of cl_kernel objects; per-queue scratch buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* SHA-256 over everything that decides the binary: library version, source
 * (the program's parts, concatenated), build options, device, driver and
 * platform, and the retarget to sm_90a where the program has it.  Fields are
 * NUL-separated so that no two different tuples hash the same stream. */
static void cache_key(const binv_context *ctx, const binv_program_desc *d, const char *options,
                      char hex[65]) {
    const char *parts[] = {options, ctx->info.name, ctx->info.vendor, ctx->info.driver_version,
                           ctx->info.device_version, ctx->info.platform_version};
    binv_sha256 s;
    unsigned char dg[32];
    binv_sha256_init(&s);
    binv_sha256_update(&s, BINV_VERSION_STRING, strlen(BINV_VERSION_STRING) + 1);
    for (int i = 0; i < BINV_PROGRAM_SOURCES && d->sources[i]; i++)
        binv_sha256_update(&s, d->sources[i], strlen(d->sources[i]));
    binv_sha256_update(&s, "", 1);
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        binv_sha256_update(&s, parts[i], strlen(parts[i]) + 1);
    if (d->flags & BINV_PROGRAM_SM90A) binv_sha256_update(&s, "sm_90a", 7);
    binv_sha256_final(&s, dg);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dg[i]);
}

static cl_program try_binary(binv_context *ctx, const char *key, const char *options) {
    unsigned char *bin = NULL;
    size_t size = 0;
    if (!binv_cache_load(ctx, key, &bin, &size)) return NULL;
    cl_int err, bin_status = CL_SUCCESS;
    const unsigned char *bins[1] = {bin};
    cl_program p = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size, bins,
                                             &bin_status, &err);
    free(bin);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return NULL;
    }
    if (clBuildProgram(p, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    binv_debug(ctx, "program %s loaded from the binary cache", key);
    return p;
}

static void store_binary(binv_context *ctx, cl_program p, const char *key) {
    size_t size = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin) return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS)
        binv_cache_store(ctx, key, bin, size);
    free(bin);
}

/* Programs with sm_90a instructions (BINV_PROGRAM_SM90A; cl/gemm_native_wg.cl).
 * NVIDIA's OpenCL C compiler targets sm_90 and refuses them, so the source
 * writes each one after a "// BINV_SM90A " marker: the source build (PTX text
 * is NVIDIA's program binary) carries them as comments with their operands
 * substituted.  binv_ptx_sm90a strips the markers and turns the ".target
 * sm_90" directive into sm_90a; retarget_sm90a builds the result from that
 * binary, replacing *p. */
int binv_ptx_sm90a(const char *ptx, size_t size, char *out, size_t *out_size) {
    static const char marker[] = "// BINV_SM90A ", target[] = "\n.target sm_90";
    const char *tp = NULL;
    for (size_t i = 0; i + sizeof target - 1 < size && !tp; i++)
        if (!memcmp(ptx + i, target, sizeof target - 1)) tp = ptx + i + sizeof target - 1;
    if (!tp || (*tp != ',' && *tp != '\n')) return -1;
    size_t o = 0;
    for (size_t i = 0; i < size;) {
        if (ptx + i == tp) out[o++] = 'a'; /* sm_90 -> sm_90a */
        if (size - i >= sizeof marker - 1 && !memcmp(ptx + i, marker, sizeof marker - 1)) {
            i += sizeof marker - 1;
            continue;
        }
        out[o++] = ptx[i++];
    }
    *out_size = o;
    return 0;
}

static binv_status retarget_sm90a(binv_context *ctx, const char *family, const char *options,
                                  cl_program *p) {
    size_t size = 0, o = 0;
    cl_int err = clGetProgramInfo(*p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
    char *ptx = err == CL_SUCCESS && size ? malloc(size) : NULL;
    char *out = ptx ? malloc(size + 1) : NULL;
    unsigned char *bins[1] = {(unsigned char *)ptx};
    if (out) err = clGetProgramInfo(*p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL);
    if (!out || err != CL_SUCCESS) {
        free(ptx);
        free(out);
        return out ? binv_set_error(ctx, err, "kernel family '%s': reading the program binary "
                                    "failed (%d)", family, (int)err)
                   : binv_set_error(ctx, BINV_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
    }
    const int ok = binv_ptx_sm90a(ptx, size, out, &o) == 0;
    free(ptx);
    if (!ok) {
        free(out);
        return binv_set_error(ctx, BINV_ERROR_BUILD_FAILED,
                              "kernel family '%s': the program binary is not PTX for sm_90 "
                              "(needed to retarget it to sm_90a)", family);
    }
    const unsigned char *in[1] = {(const unsigned char *)out};
    cl_int bst = CL_SUCCESS;
    cl_program q = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &o, in, &bst, &err);
    free(out);
    if (err == CL_SUCCESS && bst == CL_SUCCESS)
        err = clBuildProgram(q, 1, &ctx->device, options, NULL, NULL);
    else if (err == CL_SUCCESS)
        err = bst;
    if (err != CL_SUCCESS) {
        size_t len = 0;
        char *log = NULL;
        if (q && clGetProgramBuildInfo(q, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) ==
                     CL_SUCCESS &&
            (log = malloc(len + 1)) != NULL) {
            log[0] = '\0';
            clGetProgramBuildInfo(q, ctx->device, CL_PROGRAM_BUILD_LOG, len, log, NULL);
            log[len] = '\0';
        }
        if (q) clReleaseProgram(q);
        binv_status st = binv_set_error(ctx, BINV_ERROR_BUILD_FAILED,
                                        "kernel family '%s': the driver refused its sm_90a PTX "
                                        "(%d): %s", family, (int)err, log ? log : "(no log)");
        free(log);
        return st;
    }
    clReleaseProgram(*p);
    *p = q;
    binv_debug(ctx, "'%s' retargeted to sm_90a", family);
    return BINV_SUCCESS;
}

static binv_status build(binv_context *ctx, const binv_program_desc *d, const char *options,
                         cl_program *out) {
    const char *family = d->family;
    char key[65];
    cache_key(ctx, d, options, key);
    cl_program p = ctx->cache_dir ? try_binary(ctx, key, options) : NULL;
    if (p) {
        *out = p;
        return BINV_SUCCESS;
    }
    cl_int err;
    const char *srcs[1 + BINV_PROGRAM_SOURCES] = {binv_cl_common};
    cl_uint nsrc = 1;
    for (int i = 0; i < BINV_PROGRAM_SOURCES && d->sources[i]; i++) srcs[nsrc++] = d->sources[i];
    p = clCreateProgramWithSource(ctx->cl_ctx, nsrc, srcs, NULL, &err);
    BINV_CHECK_CL(ctx, err, "clCreateProgramWithSource");
    err = clBuildProgram(p, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t len = 0;
        clGetProgramBuildInfo(p, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
        char *log = malloc(len + 1);
        if (log) {
            log[0] = '\0';
            clGetProgramBuildInfo(p, ctx->device, CL_PROGRAM_BUILD_LOG, len, log, NULL);
            log[len] = '\0';
        }
        clReleaseProgram(p);
        binv_status st = binv_set_error(ctx, BINV_ERROR_BUILD_FAILED,
                                        "building kernel family '%s' failed (clBuildProgram %d, "
                                        "options '%s'). Build log:\n%s",
                                        family, (int)err, options, log ? log : "(no memory)");
        free(log);
        return st;
    }
    binv_debug(ctx, "built '%s' with '%s'", family, options);
    if (d->flags & BINV_PROGRAM_SM90A) {
        binv_status st = retarget_sm90a(ctx, family, options, &p);
        if (st != BINV_SUCCESS) {
            clReleaseProgram(p);
            return st;
        }
    }
    if (ctx->cache_dir) store_binary(ctx, p, key);
    *out = p;
    return BINV_SUCCESS;
}

binv_status binv_program_get(binv_context *ctx, const char *family, const char *source,
                             const char *defines, cl_program *out) {
    const binv_program_desc d = {.family = family, .sources = {source}};
    return binv_program_get_desc(ctx, &d, defines, out);
}

binv_status binv_program_get_desc(binv_context *ctx, const binv_program_desc *d,
                                  const char *defines, cl_program *out) {
    const char *family = d->family;
    char options[1024];
    /* BINV_EXTRA_DEFINES: extra -D options for tuning experiments (e.g.
     * -DBINV_NO_UNROLL); they only change code generation, never the
     * arithmetic, and are part of the cache key like every option. */
    const char *extra = ctx->tuning.extra_defines;
    /* Correctly rounded / and sqrt: the driver's where the device has them,
     * else (or with BINV_SOFT_DIVSQRT=1) cl/common.cl's binv_div/binv_sqrt
     * through BINV_DIV/BINV_SQRT.  The options are part of both cache keys. */
    int n = snprintf(options, sizeof options, "%s%s%s %s %s", BINV_BUILD_OPTIONS_BASE,
                     ctx->hw_divsqrt ? BINV_BUILD_OPTIONS_CR : "",
                     ctx->soft_divsqrt ? BINV_BUILD_OPTIONS_SOFT : "", defines ? defines : "",
                     extra);
    BINV_RETURN_ERROR_ON(n < 0 || (size_t)n >= sizeof options, ctx, BINV_ERROR_INVALID_ARGUMENT,
                         "internal: build options too long");
    char key[1200];
    snprintf(key, sizeof key, "%s|%s", family, options);

    pthread_mutex_lock(&ctx->lock);
    for (binv_program_entry *e = ctx->programs; e; e = e->next)
        if (!strcmp(e->key, key)) {
            *out = e->program;
            pthread_mutex_unlock(&ctx->lock);
            return BINV_SUCCESS;
        }
    pthread_mutex_unlock(&ctx->lock);

    /* Build outside the list lock (builds are slow); one build at a time, and
     * re-check after taking build_lock in case another thread built it. */
    pthread_mutex_lock(&ctx->build_lock);
    pthread_mutex_lock(&ctx->lock);
    for (binv_program_entry *e = ctx->programs; e; e = e->next)
        if (!strcmp(e->key, key)) {
            *out = e->program;
            pthread_mutex_unlock(&ctx->lock);
            pthread_mutex_unlock(&ctx->build_lock);
            return BINV_SUCCESS;
        }
    pthread_mutex_unlock(&ctx->lock);
    cl_program p = NULL;
    binv_status st = build(ctx, d, options, &p);
    if (st == BINV_SUCCESS) {
        binv_program_entry *e = calloc(1, sizeof *e);
        char *k = strdup(key);
        if (!e || !k) {
            free(e);
            free(k);
            clReleaseProgram(p);
            st = binv_set_error(ctx, BINV_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
        } else {
            e->key = k;
            e->program = p;
            pthread_mutex_lock(&ctx->lock);
            e->next = ctx->programs;
            ctx->programs = e;
            pthread_mutex_unlock(&ctx->lock);
            *out = p;
        }
    }
    pthread_mutex_unlock(&ctx->build_lock);
    return st;
}

binv_status binv_kernel_acquire(binv_context *ctx, cl_program program, const char *name,
                                cl_uint nargs, cl_kernel *out) {
    pthread_mutex_lock(&ctx->lock);
    for (binv_kernel_entry **pe = &ctx->free_kernels; *pe; pe = &(*pe)->next) {
        binv_kernel_entry *e = *pe;
        if (e->program == program && !strcmp(e->name, name)) {
            *pe = e->next;
            pthread_mutex_unlock(&ctx->lock);
            *out = e->kernel;
            free(e);
            return BINV_SUCCESS;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    cl_int err;
    cl_kernel k = clCreateKernel(program, name, &err);
    BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err, "clCreateKernel(%s) failed: %d", name,
                         (int)err);
    /* Once per kernel object (pooled kernels were checked when created): the
     * caller's argument count is the kernel's. */
    cl_uint have = 0;
    err = clGetKernelInfo(k, CL_KERNEL_NUM_ARGS, sizeof have, &have, NULL);
    if (err != CL_SUCCESS || have != nargs) {
        clReleaseKernel(k);
        if (err != CL_SUCCESS)
            return binv_set_error(ctx, err, "clGetKernelInfo(%s, CL_KERNEL_NUM_ARGS) failed: %d",
                                  name, (int)err);
        return binv_set_error(ctx, BINV_ERROR_INVALID_ARGUMENT,
                              "internal: kernel %s takes %u arguments; %u given", name,
                              (unsigned)have, (unsigned)nargs);
    }
    *out = k;
    return BINV_SUCCESS;
}

binv_status binv_kernel_set_args(binv_context *ctx, cl_kernel kernel, const char *name,
                                 const binv_arg *args, cl_uint nargs) {
    for (cl_uint i = 0; i < nargs; i++) {
        const cl_int err = clSetKernelArg(kernel, i, args[i].size, args[i].ptr);
        if (err != CL_SUCCESS)
            return binv_set_error(ctx, err, "clSetKernelArg(%s, %u) failed: %d", name,
                                  (unsigned)i, (int)err);
    }
    return BINV_SUCCESS;
}

void binv_kernel_release(binv_context *ctx, cl_program program, const char *name,
                         cl_kernel kernel) {
    binv_kernel_entry *e = calloc(1, sizeof *e);
    if (!e || strlen(name) >= sizeof e->name) {
        free(e);
        clReleaseKernel(kernel); /* not pooled: still correct, only slower */
        return;
    }
    e->program = program;
    strcpy(e->name, name);
    e->kernel = kernel;
    pthread_mutex_lock(&ctx->lock);
    e->next = ctx->free_kernels;
    ctx->free_kernels = e;
    pthread_mutex_unlock(&ctx->lock);
}

/* Releases an entry's objects and frees it (nobody uses it). */
static void binv_workspace_free(binv_workspace *ws) {
    if (ws->buffer) clReleaseMemObject(ws->buffer);
    if (ws->counters) clReleaseMemObject(ws->counters);
    clReleaseCommandQueue(ws->queue);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
}

binv_status binv_workspace_acquire(binv_context *ctx, cl_command_queue queue, size_t bytes,
                                   binv_workspace **out, cl_mem *buffer) {
    cl_command_queue_properties props = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    BINV_CHECK_CL(ctx, err, "clGetCommandQueueInfo(CL_QUEUE_PROPERTIES)");
    if (bytes == 0) bytes = 4;
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
        /* Commands of an out-of-order queue may overlap: a private buffer,
         * released right after the enqueues (OpenCL keeps it alive until the
         * commands that use it complete). */
        *out = NULL;
        *buffer = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        BINV_CHECK_CL(ctx, err, "clCreateBuffer(workspace)");
        return BINV_SUCCESS;
    }
    /* The list is kept most recently used first and bounded: a context that
     * sees many queues (one per request) keeps the BINV_WORKSPACES latest.
     * `users` (under ctx->lock) counts the threads between acquire and
     * release; only an entry nobody uses is evicted, so no thread holds or
     * waits for the lock of a freed entry. */
    binv_workspace *evicted = NULL;
    pthread_mutex_lock(&ctx->lock);
    binv_workspace **pw = &ctx->workspaces;
    while (*pw && (*pw)->queue != queue) pw = &(*pw)->next;
    binv_workspace *ws = *pw;
    if (ws) {
        *pw = ws->next; /* to the front */
    } else {
        ws = calloc(1, sizeof *ws);
        if (!ws || pthread_mutex_init(&ws->lock, NULL) != 0) {
            free(ws);
            pthread_mutex_unlock(&ctx->lock);
            return binv_set_error(ctx, BINV_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
        }
        err = clRetainCommandQueue(queue);
        if (err != CL_SUCCESS) {
            pthread_mutex_destroy(&ws->lock);
            free(ws);
            pthread_mutex_unlock(&ctx->lock);
            return binv_set_error(ctx, err, "clRetainCommandQueue failed: %d", (int)err);
        }
        ws->queue = queue;
    }
    ws->users++;
    ws->next = ctx->workspaces;
    ctx->workspaces = ws;
    size_t kept = 0;
    for (pw = &ctx->workspaces; *pw;) {
        binv_workspace *w = *pw;
        if (++kept > BINV_WORKSPACES && w->users == 0) {
            *pw = w->next;
            w->next = evicted;
            evicted = w;
            kept--;
        } else {
            pw = &w->next;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    /* Released outside ctx->lock (the last release of a queue the caller
     * already released may wait for its commands).  Safe while commands
     * enqueued earlier still use them: clReleaseMemObject deletes a buffer
     * only once its count is zero AND the commands using it have finished,
     * and clReleaseCommandQueue flushes and deletes the queue only once its
     * commands have finished.  No pooled kernel keeps using a stale buffer
     * argument: every launch sets all of a kernel's arguments. */
    while (evicted) {
        binv_workspace *n = evicted->next;
        binv_workspace_free(evicted);
        evicted = n;
    }
    pthread_mutex_lock(&ws->lock);
    if (ws->size < bytes) {
        /* Grow geometrically; the old buffer lives on until its commands end. */
        size_t want = ws->size * 2 > bytes ? ws->size * 2 : bytes;
        cl_mem b = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, want, NULL, &err);
        if (err != CL_SUCCESS) {
            binv_workspace_release(ctx, ws, NULL); /* unlocks, and one user less */
            return binv_set_error(ctx, err, "clCreateBuffer(workspace of %zu bytes) failed: %d",
                                  want, (int)err);
        }
        if (ws->buffer) clReleaseMemObject(ws->buffer);
        ws->buffer = b;
        ws->size = want;
    }
    *out = ws;
    *buffer = ws->buffer;
    return BINV_SUCCESS;
}

binv_status binv_workspace_counters(binv_context *ctx, binv_workspace *ws, size_t count,
                                    cl_mem *counters) {
    BINV_RETURN_ERROR_ON(!ws, ctx, BINV_ERROR_INVALID_ARGUMENT,
                         "split-K counters need an in-order queue's workspace");
    if (ws->ncounters < count) {
        size_t want = ws->ncounters * 2 > count ? ws->ncounters * 2 : count;
        cl_int err;
        cl_mem b = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, want * sizeof(cl_uint), NULL, &err);
        BINV_CHECK_CL(ctx, err, "clCreateBuffer(split-K counters)");
        const cl_uint zero = 0;
        err = clEnqueueFillBuffer(ws->queue, b, &zero, sizeof zero, 0, want * sizeof(cl_uint), 0,
                                  NULL, NULL);
        if (err != CL_SUCCESS) {
            clReleaseMemObject(b);
            return binv_set_error(ctx, err, "clEnqueueFillBuffer(split-K counters) failed: %d",
                                  (int)err);
        }
        if (ws->counters) clReleaseMemObject(ws->counters);
        ws->counters = b;
        ws->ncounters = want;
    }
    *counters = ws->counters;
    return BINV_SUCCESS;
}

void binv_workspace_release(binv_context *ctx, binv_workspace *ws, cl_mem buffer) {
    if (ws) {
        pthread_mutex_unlock(&ws->lock);
        pthread_mutex_lock(&ctx->lock);
        ws->users--;
        pthread_mutex_unlock(&ctx->lock);
    } else if (buffer) {
        clReleaseMemObject(buffer);
    }
}

void binv_program_destroy_all(binv_context *ctx) {
    while (ctx->free_kernels) {
        binv_kernel_entry *n = ctx->free_kernels->next;
        clReleaseKernel(ctx->free_kernels->kernel);
        free(ctx->free_kernels);
        ctx->free_kernels = n;
    }
    while (ctx->workspaces) {
        binv_workspace *n = ctx->workspaces->next;
        binv_workspace_free(ctx->workspaces);
        ctx->workspaces = n;
    }
    while (ctx->programs) {
        binv_program_entry *n = ctx->programs->next;
        clReleaseProgram(ctx->programs->program);
        free(ctx->programs->key);
        free(ctx->programs);
        ctx->programs = n;
    }
}

binv_status binv_kernel_launch(binv_context *ctx, cl_command_queue q, cl_program prog,
                               const char *name, const binv_arg *args, cl_uint nargs,
                               cl_uint dims, const size_t *gws, const size_t *lws, cl_uint nwait,
                               const cl_event *wait, cl_event *ev) {
    cl_kernel kern;
    binv_status st = binv_kernel_acquire(ctx, prog, name, nargs, &kern);
    if (st != BINV_SUCCESS) return st;
    st = binv_kernel_set_args(ctx, kern, name, args, nargs);
    if (st == BINV_SUCCESS) {
        cl_int err = clEnqueueNDRangeKernel(q, kern, dims, NULL, gws, lws, nwait, wait, ev);
        if (err != CL_SUCCESS)
            st = binv_set_error(ctx, err, "clEnqueueNDRangeKernel(%s) failed: %d", name, (int)err);
    }
    binv_kernel_release(ctx, prog, name, kern);
    return st;
}

binv_status binv_program_get_dtype(binv_context *ctx, const char *family, const char *source,
                                   binv_dtype dtype, cl_program *out) {
    char defines[32];
    snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d", (int)dtype);
    return binv_program_get(ctx, family, source, defines, out);
}
