/* binv_context: creation, device checks, destruction. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One clGetDeviceInfo; a failure is returned as the OpenCL status itself
 * (e.g. CL_OUT_OF_RESOURCES, CL_OUT_OF_HOST_MEMORY: transient, the device may
 * be fine), except CL_INVALID_DEVICE: not a device, so not a supported one. */
static binv_status device_info(binv_context *ctx, cl_device_info what, const char *name,
                               size_t size, void *value) {
    const cl_int err = clGetDeviceInfo(ctx->device, what, size, value, NULL);
    if (err == CL_SUCCESS) return BINV_SUCCESS;
    if (err == CL_INVALID_DEVICE)
        return binv_set_error(ctx, BINV_ERROR_UNSUPPORTED_DEVICE,
                              "device is not a valid cl_device_id (clGetDeviceInfo(%s): %d)", name,
                              (int)err);
    return binv_set_error(ctx, err, "clGetDeviceInfo(%s) failed: OpenCL error %d", name, (int)err);
}

static binv_status query_device(binv_context *ctx) {
    binv_device_info *d = &ctx->info;
    const struct {
        cl_device_info what;
        const char *name;
        size_t size;
        void *value;
    } q[] = {
        {CL_DEVICE_NAME, "CL_DEVICE_NAME", sizeof d->name, d->name},
        {CL_DEVICE_VENDOR, "CL_DEVICE_VENDOR", sizeof d->vendor, d->vendor},
        {CL_DRIVER_VERSION, "CL_DRIVER_VERSION", sizeof d->driver_version, d->driver_version},
        {CL_DEVICE_VERSION, "CL_DEVICE_VERSION", sizeof d->device_version, d->device_version},
        {CL_DEVICE_VENDOR_ID, "CL_DEVICE_VENDOR_ID", sizeof d->vendor_id, &d->vendor_id},
        {CL_DEVICE_MAX_COMPUTE_UNITS, "CL_DEVICE_MAX_COMPUTE_UNITS", sizeof d->compute_units,
         &d->compute_units},
        {CL_DEVICE_MAX_WORK_GROUP_SIZE, "CL_DEVICE_MAX_WORK_GROUP_SIZE",
         sizeof d->max_work_group_size, &d->max_work_group_size},
        {CL_DEVICE_LOCAL_MEM_SIZE, "CL_DEVICE_LOCAL_MEM_SIZE", sizeof d->local_mem_size,
         &d->local_mem_size},
        {CL_DEVICE_TYPE, "CL_DEVICE_TYPE", sizeof d->type, &d->type},
        {CL_DEVICE_PLATFORM, "CL_DEVICE_PLATFORM", sizeof ctx->platform, &ctx->platform},
    };
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        const binv_status st = device_info(ctx, q[i].what, q[i].name, q[i].size, q[i].value);
        if (st != BINV_SUCCESS) return st;
    }
    cl_int err = clGetPlatformInfo(ctx->platform, CL_PLATFORM_VERSION, sizeof d->platform_version,
                                   d->platform_version, NULL);
    BINV_CHECK_CL(ctx, err, "clGetPlatformInfo(CL_PLATFORM_VERSION)");

    /* Portable bits need IEEE-754 single precision rounding to nearest.
     * Correctly rounded division and square root come from the driver where
     * the device advertises them (-cl-fp32-correctly-rounded-divide-sqrt is
     * only allowed then), else from cl/common.cl's binv_div / binv_sqrt
     * (the same bits: a correctly rounded result is unique). */
    cl_device_fp_config fp = 0;
    binv_status st = device_info(ctx, CL_DEVICE_SINGLE_FP_CONFIG, "CL_DEVICE_SINGLE_FP_CONFIG",
                                 sizeof fp, &fp);
    if (st != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(!(fp & CL_FP_ROUND_TO_NEAREST), ctx, BINV_ERROR_UNSUPPORTED_DEVICE,
                         "device '%s' lacks f32 round-to-nearest (CL_DEVICE_SINGLE_FP_CONFIG=0x%llx)",
                         d->name, (unsigned long long)fp);
    ctx->hw_divsqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    if (!ctx->hw_divsqrt) ctx->soft_divsqrt = 1;
    /* Vector loads of 16-bit storage unpack words in little-endian order. */
    cl_bool little = CL_FALSE;
    st = device_info(ctx, CL_DEVICE_ENDIAN_LITTLE, "CL_DEVICE_ENDIAN_LITTLE", sizeof little,
                     &little);
    if (st != BINV_SUCCESS) return st;
    BINV_RETURN_ERROR_ON(!little, ctx, BINV_ERROR_UNSUPPORTED_DEVICE,
                         "device '%s' is not little-endian", d->name);
    BINV_RETURN_ERROR_ON(d->max_work_group_size < 64 || d->local_mem_size < 16384, ctx,
                         BINV_ERROR_UNSUPPORTED_DEVICE,
                         "device '%s' needs work-groups of >= 64 items and >= 16 KiB local memory",
                         d->name);
    return BINV_SUCCESS;
}

static binv_status context_has_device(binv_context *ctx) {
    cl_uint n = 0;
    cl_int err = clGetContextInfo(ctx->cl_ctx, CL_CONTEXT_NUM_DEVICES, sizeof n, &n, NULL);
    BINV_RETURN_ERROR_ON(err != CL_SUCCESS, ctx, err,
                         "context is not a valid cl_context (clGetContextInfo: %d)", (int)err);
    cl_device_id *devs = calloc(n ? n : 1, sizeof *devs);
    BINV_RETURN_ERROR_ON(!devs, ctx, BINV_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
    err = clGetContextInfo(ctx->cl_ctx, CL_CONTEXT_DEVICES, n * sizeof *devs, devs, NULL);
    int found = 0;
    for (cl_uint i = 0; err == CL_SUCCESS && i < n; i++) found |= devs[i] == ctx->device;
    free(devs);
    BINV_CHECK_CL(ctx, err, "clGetContextInfo(CL_CONTEXT_DEVICES)");
    BINV_RETURN_ERROR_ON(!found, ctx, BINV_ERROR_CONTEXT_MISMATCH,
                         "device is not one of the context's devices");
    return BINV_SUCCESS;
}

/* cl_nv_device_attribute_query */
#define BINV_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000

/* The native path needs an NVIDIA device of compute capability >= 8.0
 * (mma.sync.m16n8k16 with bf16).  Otherwise the context keeps the portable
 * path and remembers why. */
static void grant_native(binv_context *ctx) {
    char ext[8192] = "";
    clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    cl_uint major = 0;
    if (ctx->info.vendor_id != 0x10de || !strstr(ext, "cl_nv_device_attribute_query")) {
        snprintf(ctx->path_note, sizeof ctx->path_note,
                 "native path: '%s' is not an NVIDIA device with cl_nv_device_attribute_query; "
                 "running the portable path", ctx->info.name);
        return;
    }
    if (clGetDeviceInfo(ctx->device, BINV_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, sizeof major,
                        &major, NULL) != CL_SUCCESS || major < 8) {
        snprintf(ctx->path_note, sizeof ctx->path_note,
                 "native path: '%s' has compute capability %u.x (< 8.0); running the portable "
                 "path", ctx->info.name, major);
        return;
    }
    cl_uint minor = 0;
    clGetDeviceInfo(ctx->device, BINV_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV + 1, sizeof minor,
                    &minor, NULL);
    ctx->nv_cc = major * 10 + minor;
    ctx->path = BINV_PATH_NATIVE;
}

/* Which device-wide fence the one-launch split-K combine can use (cl/gemm.cl,
 * BINV_FENCE): 1 on CPU devices (mem_fence is a full fence there), 2 on
 * NVIDIA GPUs (PTX membar.gl; NVIDIA's mem_fence is work-group scope), else
 * 0: OpenCL 1.2 promises no ordering between work-groups, so split-K keeps
 * its second launch. */
static int fence_kind(const binv_context *ctx) {
    /* Only a device that is nothing but a CPU: a simulator that reports
     * every type (oclgrind) follows OpenCL 1.2's memory model, under which
     * another work-group's stores need not be visible before the kernel
     * ends. */
    if ((ctx->info.type & ~(cl_device_type)CL_DEVICE_TYPE_DEFAULT) == CL_DEVICE_TYPE_CPU) return 1;
    char ext[8192] = "";
    clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    if (ctx->info.vendor_id == 0x10de && strstr(ext, "cl_nv_device_attribute_query")) return 2;
    return 0;
}

binv_path binv_context_path(const binv_context *ctx) {
    if (!ctx) return BINV_PATH_PORTABLE;
    if (ctx->path != BINV_PATH_NATIVE && ctx->path_note[0])
        binv_set_error((binv_context *)ctx, BINV_SUCCESS, "%s", ctx->path_note);
    return ctx->path;
}

binv_status binv_context_create(cl_context context, cl_device_id device,
                                const binv_options *options, binv_context **out) {
    return binv_context_create_tuned(context, device, options, NULL, out);
}

binv_status binv_context_create_tuned(cl_context context, cl_device_id device,
                                      const binv_options *options, const binv_tuning *tuning,
                                      binv_context **out) {
    if (!out) return BINV_ERROR_INVALID_ARGUMENT;
    binv_tuning env;
    if (!tuning) {
        binv_tuning_from_env(&env);
        tuning = &env;
    }
    *out = NULL;
    if (!context || !device) return BINV_ERROR_INVALID_ARGUMENT;
    binv_options opt = {sizeof(binv_options), BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    if (options) {
        /* Accept any caller struct at least as large as struct_size itself.
         * A field counts only when it lies wholly inside struct_size: fields
         * past it, and a field that struct_size cuts (no version of the
         * struct ends there), keep their defaults.  Copying the first
         * struct_size bytes instead would take half a cache_dir pointer. */
        if (options->struct_size < sizeof(size_t)) return BINV_ERROR_INVALID_ARGUMENT;
        const size_t have = options->struct_size;
        const char *src = (const char *)options;
#define BINV_OPTION_COPY(field)                                                       \
        do {                                                                          \
            if (have >= offsetof(binv_options, field) + sizeof opt.field)             \
                memcpy(&opt.field, src + offsetof(binv_options, field), sizeof opt.field); \
        } while (0)
        BINV_OPTION_COPY(schedule);
        BINV_OPTION_COPY(cache_dir);
        BINV_OPTION_COPY(path);
#undef BINV_OPTION_COPY
        if (opt.schedule != BINV_SCHEDULE_INVARIANT && opt.schedule != BINV_SCHEDULE_ADAPTIVE)
            return BINV_ERROR_INVALID_ENUM;
        if (opt.path != BINV_PATH_PORTABLE && opt.path != BINV_PATH_NATIVE)
            return BINV_ERROR_INVALID_ENUM;
    }
    binv_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return BINV_ERROR_OUT_OF_HOST_MEMORY;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        return BINV_ERROR_OUT_OF_HOST_MEMORY;
    }
    if (pthread_mutex_init(&ctx->build_lock, NULL) != 0) {
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return BINV_ERROR_OUT_OF_HOST_MEMORY;
    }
    ctx->cl_ctx = context;
    ctx->device = device;
    ctx->schedule = opt.schedule;
    ctx->tuning = *tuning;
    /* BINV_SOFT_DIVSQRT=1: software division and square root even where the
     * device has correctly rounded ones (tests: the same bits either way). */
    ctx->soft_divsqrt = tuning->soft_divsqrt;
    binv_status st = BINV_SUCCESS;
    if (opt.cache_dir && *opt.cache_dir) {
        ctx->cache_dir = strdup(opt.cache_dir);
        if (!ctx->cache_dir) st = BINV_ERROR_OUT_OF_HOST_MEMORY;
    }
    if (st == BINV_SUCCESS) st = context_has_device(ctx);
    if (st == BINV_SUCCESS) st = query_device(ctx);
    if (st == BINV_SUCCESS && opt.path == BINV_PATH_NATIVE) grant_native(ctx);
    if (st == BINV_SUCCESS) {
        ctx->fence = fence_kind(ctx);
        ctx->gemm_fuse = ctx->fence > 0 && !tuning->gemm_unfused;
    }
    /* The context holds a reference to the caller's cl_context and device
     * from here on; destroy releases exactly the references taken. */
    int retained_ctx = 0;
    if (st == BINV_SUCCESS) {
        const cl_int err = clRetainContext(context);
        if (err != CL_SUCCESS)
            st = binv_set_error(ctx, err, "clRetainContext failed (%d)", (int)err);
        else
            retained_ctx = 1;
    }
    if (st == BINV_SUCCESS) {
        const cl_int err = clRetainDevice(device);
        if (err != CL_SUCCESS) st = binv_set_error(ctx, err, "clRetainDevice failed (%d)", (int)err);
    }
    if (st != BINV_SUCCESS) {
        binv_debug(ctx, "context_create failed: %s", binv_context_last_error(ctx));
        if (!retained_ctx) ctx->cl_ctx = NULL; /* destroy releases only what was retained */
        ctx->device = NULL;
        binv_context_destroy(ctx);
        return st;
    }
    binv_debug(ctx, "context on '%s' (%s, driver %s), %u compute units, schedule %s", ctx->info.name,
               ctx->info.platform_version, ctx->info.driver_version, ctx->info.compute_units,
               ctx->schedule == BINV_SCHEDULE_INVARIANT ? "invariant" : "adaptive");
    *out = ctx;
    return BINV_SUCCESS;
}

void binv_context_destroy(binv_context *ctx) {
    if (!ctx) return;
    binv_program_destroy_all(ctx);
    binv_attention_destroy_all(ctx);
    while (ctx->errors) {
        binv_err_slot *n = ctx->errors->next;
        free(ctx->errors);
        ctx->errors = n;
    }
    free(ctx->cache_dir);
    if (ctx->device) clReleaseDevice(ctx->device);
    if (ctx->cl_ctx) clReleaseContext(ctx->cl_ctx);
    pthread_mutex_destroy(&ctx->build_lock);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}
