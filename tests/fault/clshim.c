/* Fault-injection shim over the OpenCL API: see clshim.h.  Every wrapper
 * forwards to the next definition of its symbol (the ICD loader). */
#define _GNU_SOURCE
#include "clshim.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int armed;
static unsigned long ncalls, fail_at;
static int fired, fired_err;
static const char *fired_name;

void clshim_arm(int on) { __atomic_store_n(&armed, on, __ATOMIC_SEQ_CST); }
static int is_armed(void) { return __atomic_load_n(&armed, __ATOMIC_SEQ_CST); }
void clshim_fail_at(unsigned long n) {
    pthread_mutex_lock(&lock);
    fail_at = n;
    fired = 0;
    pthread_mutex_unlock(&lock);
}
unsigned long clshim_calls(void) { return ncalls; }
int clshim_fired(const char **name, int *error) {
    if (name) *name = fired_name;
    if (error) *error = fired_err;
    return fired;
}
void clshim_reset(void) {
    pthread_mutex_lock(&lock);
    ncalls = 0;
    fail_at = 0;
    fired = 0;
    fired_name = NULL;
    fired_err = 0;
    pthread_mutex_unlock(&lock);
}

/* Counts a fallible call; returns the error to inject, or CL_SUCCESS. */
static cl_int fallible(const char *name, cl_int err) {
    if (!is_armed()) return CL_SUCCESS;
    pthread_mutex_lock(&lock);
    cl_int r = CL_SUCCESS;
    if (++ncalls == fail_at) {
        fired = 1;
        fired_name = name;
        fired_err = err;
        r = err;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

/* ---- object ledger: armed references per handle ------------------------- */
#define OBJ_CAP (1 << 16)
static struct obj {
    const void *h;
    const char *kind;
    long bal;
} objs[OBJ_CAP];

static void obj_add(const void *h, const char *kind, long d) {
    if (!h || !is_armed()) return;
    pthread_mutex_lock(&lock);
    size_t i = ((uintptr_t)h >> 4) * 2654435761u % OBJ_CAP;
    for (size_t n = 0; n < OBJ_CAP; n++, i = (i + 1) % OBJ_CAP) {
        if (objs[i].h == h) {
            objs[i].bal += d;
            objs[i].kind = kind;
            break;
        }
        if (!objs[i].h) {
            objs[i] = (struct obj){h, kind, d};
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

long clshim_objects_outstanding(int verbose) {
    long n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < OBJ_CAP; i++)
        if (objs[i].h && objs[i].bal != 0) {
            if (verbose && n < 16)
                fprintf(stderr, "clshim: %s %p: armed reference balance %+ld\n", objs[i].kind,
                        objs[i].h, objs[i].bal);
            n++;
        }
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- host heap ledger (with -Wl,--wrap=...) ------------------------------- */
#define HEAP_CAP (1 << 17)
#define TOMB ((void *)1)
static void *heap[HEAP_CAP];
static long heap_live, heap_used; /* live entries; live + tombstones */
static int heap_wrapped;
static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t hslot(const void *p) { return ((uintptr_t)p >> 4) * 2654435761u % HEAP_CAP; }
static void heap_rehash(void) {
    static void *tmp[HEAP_CAP];
    memcpy(tmp, heap, sizeof heap);
    memset(heap, 0, sizeof heap);
    heap_used = 0;
    for (size_t i = 0; i < HEAP_CAP; i++)
        if (tmp[i] && tmp[i] != TOMB) {
            size_t j = hslot(tmp[i]);
            while (heap[j]) j = (j + 1) % HEAP_CAP;
            heap[j] = tmp[i];
            heap_used++;
        }
}
static void heap_track(void *p) {
    if (!p || !is_armed()) return;
    pthread_mutex_lock(&heap_lock);
    if (heap_used + 1 > HEAP_CAP * 3 / 4) heap_rehash();
    if (heap_live + 1 < HEAP_CAP / 2) {
        size_t j = hslot(p);
        while (heap[j] && heap[j] != TOMB) j = (j + 1) % HEAP_CAP;
        if (!heap[j]) heap_used++;
        heap[j] = p;
        heap_live++;
    }
    pthread_mutex_unlock(&heap_lock);
}
static void heap_untrack(void *p) {
    if (!p) return;
    pthread_mutex_lock(&heap_lock);
    for (size_t j = hslot(p), n = 0; heap[j] && n < HEAP_CAP; j = (j + 1) % HEAP_CAP, n++)
        if (heap[j] == p) {
            heap[j] = TOMB;
            heap_live--;
            break;
        }
    pthread_mutex_unlock(&heap_lock);
}
long clshim_heap_outstanding(void) { return heap_live; }
int clshim_heap_tracking(void) {
    /* One wrapped allocation proves the wrappers are linked in. */
    free(malloc(1));
    return heap_wrapped;
}

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void __real_free(void *);
char *__real_strdup(const char *);
void *__wrap_malloc(size_t n) {
    heap_wrapped = 1;
    void *p = __real_malloc(n);
    heap_track(p);
    return p;
}
void *__wrap_calloc(size_t a, size_t b) {
    heap_wrapped = 1;
    void *p = __real_calloc(a, b);
    heap_track(p);
    return p;
}
void *__wrap_realloc(void *q, size_t n) {
    heap_wrapped = 1;
    void *p = __real_realloc(q, n);
    if (p || !n) heap_untrack(q);
    heap_track(p);
    return p;
}
void __wrap_free(void *p) {
    heap_untrack(p);
    __real_free(p);
}
char *__wrap_strdup(const char *s) {
    char *p = __real_strdup(s);
    heap_track(p);
    return p;
}

void clshim_ledger_clear(void) {
    pthread_mutex_lock(&lock);
    memset(objs, 0, sizeof objs);
    pthread_mutex_unlock(&lock);
    pthread_mutex_lock(&heap_lock);
    memset(heap, 0, sizeof heap);
    heap_live = heap_used = 0;
    pthread_mutex_unlock(&heap_lock);
}

/* ---- wrappers ------------------------------------------------------------- */
#define REAL(name)                                                              \
    static __typeof__(&name) real_;                                             \
    if (!real_) real_ = (__typeof__(&name))dlsym(RTLD_NEXT, #name);             \
    if (!real_) {                                                               \
        fprintf(stderr, "clshim: %s not found\n", #name);                      \
        abort();                                                                \
    }

/* A cl_int call: fail with `err` when it is the chosen one. */
#define INT_CALL(name, err, args)                                               \
    REAL(name);                                                                 \
    cl_int inj_ = fallible(#name, err);                                         \
    if (inj_ != CL_SUCCESS) return inj_;                                        \
    return real_ args

CL_API_ENTRY cl_int CL_API_CALL clGetPlatformInfo(cl_platform_id p, cl_platform_info n, size_t s,
                                                  void *v, size_t *r) {
    INT_CALL(clGetPlatformInfo, CL_OUT_OF_HOST_MEMORY, (p, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetDeviceInfo(cl_device_id d, cl_device_info n, size_t s, void *v,
                                                size_t *r) {
    INT_CALL(clGetDeviceInfo, CL_OUT_OF_RESOURCES, (d, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetContextInfo(cl_context c, cl_context_info n, size_t s, void *v,
                                                 size_t *r) {
    INT_CALL(clGetContextInfo, CL_OUT_OF_HOST_MEMORY, (c, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetCommandQueueInfo(cl_command_queue q, cl_command_queue_info n,
                                                      size_t s, void *v, size_t *r) {
    INT_CALL(clGetCommandQueueInfo, CL_OUT_OF_RESOURCES, (q, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetMemObjectInfo(cl_mem m, cl_mem_info n, size_t s, void *v,
                                                   size_t *r) {
    INT_CALL(clGetMemObjectInfo, CL_OUT_OF_RESOURCES, (m, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetProgramInfo(cl_program p, cl_program_info n, size_t s, void *v,
                                                 size_t *r) {
    INT_CALL(clGetProgramInfo, CL_OUT_OF_HOST_MEMORY, (p, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetProgramBuildInfo(cl_program p, cl_device_id d,
                                                      cl_program_build_info n, size_t s, void *v,
                                                      size_t *r) {
    INT_CALL(clGetProgramBuildInfo, CL_OUT_OF_HOST_MEMORY, (p, d, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetKernelInfo(cl_kernel k, cl_kernel_info n, size_t s, void *v,
                                                size_t *r) {
    INT_CALL(clGetKernelInfo, CL_OUT_OF_HOST_MEMORY, (k, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetKernelWorkGroupInfo(cl_kernel k, cl_device_id d,
                                                         cl_kernel_work_group_info n, size_t s,
                                                         void *v, size_t *r) {
    INT_CALL(clGetKernelWorkGroupInfo, CL_OUT_OF_RESOURCES, (k, d, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clGetEventInfo(cl_event e, cl_event_info n, size_t s, void *v,
                                               size_t *r) {
    INT_CALL(clGetEventInfo, CL_OUT_OF_RESOURCES, (e, n, s, v, r));
}
CL_API_ENTRY cl_int CL_API_CALL clBuildProgram(cl_program p, cl_uint nd, const cl_device_id *dl,
                                               const char *o,
                                               void(CL_CALLBACK *cb)(cl_program, void *), void *u) {
    INT_CALL(clBuildProgram, CL_OUT_OF_RESOURCES, (p, nd, dl, o, cb, u));
}
CL_API_ENTRY cl_int CL_API_CALL clSetKernelArg(cl_kernel k, cl_uint i, size_t s, const void *v) {
    INT_CALL(clSetKernelArg, CL_OUT_OF_RESOURCES, (k, i, s, v));
}
CL_API_ENTRY cl_int CL_API_CALL clFinish(cl_command_queue q) {
    INT_CALL(clFinish, CL_OUT_OF_RESOURCES, (q));
}
CL_API_ENTRY cl_int CL_API_CALL clFlush(cl_command_queue q) {
    INT_CALL(clFlush, CL_OUT_OF_RESOURCES, (q));
}
CL_API_ENTRY cl_int CL_API_CALL clWaitForEvents(cl_uint n, const cl_event *l) {
    INT_CALL(clWaitForEvents, CL_OUT_OF_RESOURCES, (n, l));
}
CL_API_ENTRY cl_int CL_API_CALL clSetUserEventStatus(cl_event e, cl_int s) {
    INT_CALL(clSetUserEventStatus, CL_OUT_OF_RESOURCES, (e, s));
}

/* Enqueues: the event they return is a new object. */
#define ENQ_CALL(name, ev, args)                                                \
    REAL(name);                                                                 \
    cl_int inj_ = fallible(#name, CL_OUT_OF_RESOURCES);                         \
    if (inj_ != CL_SUCCESS) return inj_;                                        \
    cl_int r_ = real_ args;                                                     \
    if (r_ == CL_SUCCESS && (ev)) obj_add(*(ev), "cl_event", 1);                \
    return r_

CL_API_ENTRY cl_int CL_API_CALL clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint d,
                                                       const size_t *o, const size_t *g,
                                                       const size_t *l, cl_uint n,
                                                       const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueNDRangeKernel, e, (q, k, d, o, g, l, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueFillBuffer(cl_command_queue q, cl_mem b, const void *p,
                                                    size_t ps, size_t o, size_t s, cl_uint n,
                                                    const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueFillBuffer, e, (q, b, p, ps, o, s, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem b, cl_bool bl,
                                                     size_t o, size_t s, const void *p, cl_uint n,
                                                     const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueWriteBuffer, e, (q, b, bl, o, s, p, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue q, cl_mem b, cl_bool bl,
                                                    size_t o, size_t s, void *p, cl_uint n,
                                                    const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueReadBuffer, e, (q, b, bl, o, s, p, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueCopyBuffer(cl_command_queue q, cl_mem a, cl_mem b,
                                                    size_t ao, size_t bo, size_t s, cl_uint n,
                                                    const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueCopyBuffer, e, (q, a, b, ao, bo, s, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint n,
                                                            const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueMarkerWithWaitList, e, (q, n, w, e));
}
CL_API_ENTRY cl_int CL_API_CALL clEnqueueBarrierWithWaitList(cl_command_queue q, cl_uint n,
                                                             const cl_event *w, cl_event *e) {
    ENQ_CALL(clEnqueueBarrierWithWaitList, e, (q, n, w, e));
}

/* Retains are fallible (+1 on success); releases are not (-1). */
#define RETAIN(name, type, kind)                                                \
    CL_API_ENTRY cl_int CL_API_CALL name(type o) {                              \
        REAL(name);                                                             \
        cl_int inj_ = fallible(#name, CL_OUT_OF_HOST_MEMORY);                   \
        if (inj_ != CL_SUCCESS) return inj_;                                    \
        cl_int r_ = real_(o);                                                   \
        if (r_ == CL_SUCCESS) obj_add(o, kind, 1);                              \
        return r_;                                                              \
    }
#define RELEASE(name, type, kind)                                               \
    CL_API_ENTRY cl_int CL_API_CALL name(type o) {                              \
        REAL(name);                                                             \
        obj_add(o, kind, -1);                                                   \
        return real_(o);                                                        \
    }
RETAIN(clRetainContext, cl_context, "cl_context")
RETAIN(clRetainCommandQueue, cl_command_queue, "cl_command_queue")
RETAIN(clRetainMemObject, cl_mem, "cl_mem")
RETAIN(clRetainProgram, cl_program, "cl_program")
RETAIN(clRetainKernel, cl_kernel, "cl_kernel")
RETAIN(clRetainEvent, cl_event, "cl_event")
RETAIN(clRetainDevice, cl_device_id, "cl_device_id")
RELEASE(clReleaseContext, cl_context, "cl_context")
RELEASE(clReleaseCommandQueue, cl_command_queue, "cl_command_queue")
RELEASE(clReleaseMemObject, cl_mem, "cl_mem")
RELEASE(clReleaseProgram, cl_program, "cl_program")
RELEASE(clReleaseKernel, cl_kernel, "cl_kernel")
RELEASE(clReleaseEvent, cl_event, "cl_event")
RELEASE(clReleaseDevice, cl_device_id, "cl_device_id")

/* Creators: NULL and *errcode_ret = err when chosen; +1 on success. */
#define CREATE_CALL(name, err, kind, args)                                      \
    REAL(name);                                                                 \
    cl_int inj_ = fallible(#name, err);                                         \
    if (inj_ != CL_SUCCESS) {                                                   \
        if (errcode_ret) *errcode_ret = inj_;                                   \
        return NULL;                                                            \
    }                                                                           \
    __typeof__(real_ args) o_ = real_ args;                                     \
    obj_add(o_, kind, 1);                                                       \
    return o_

CL_API_ENTRY cl_mem CL_API_CALL clCreateBuffer(cl_context c, cl_mem_flags f, size_t s, void *h,
                                               cl_int *errcode_ret) {
    CREATE_CALL(clCreateBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE, "cl_mem", (c, f, s, h, errcode_ret));
}
CL_API_ENTRY cl_mem CL_API_CALL clCreateSubBuffer(cl_mem b, cl_mem_flags f,
                                                  cl_buffer_create_type t, const void *i,
                                                  cl_int *errcode_ret) {
    CREATE_CALL(clCreateSubBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE, "cl_mem",
                (b, f, t, i, errcode_ret));
}
CL_API_ENTRY cl_program CL_API_CALL clCreateProgramWithSource(cl_context c, cl_uint n,
                                                              const char **s, const size_t *l,
                                                              cl_int *errcode_ret) {
    CREATE_CALL(clCreateProgramWithSource, CL_OUT_OF_HOST_MEMORY, "cl_program",
                (c, n, s, l, errcode_ret));
}
CL_API_ENTRY cl_program CL_API_CALL clCreateProgramWithBinary(cl_context c, cl_uint n,
                                                              const cl_device_id *d,
                                                              const size_t *l,
                                                              const unsigned char **b,
                                                              cl_int *st, cl_int *errcode_ret) {
    CREATE_CALL(clCreateProgramWithBinary, CL_OUT_OF_HOST_MEMORY, "cl_program",
                (c, n, d, l, b, st, errcode_ret));
}
CL_API_ENTRY cl_kernel CL_API_CALL clCreateKernel(cl_program p, const char *n, cl_int *errcode_ret) {
    CREATE_CALL(clCreateKernel, CL_OUT_OF_HOST_MEMORY, "cl_kernel", (p, n, errcode_ret));
}
CL_API_ENTRY cl_event CL_API_CALL clCreateUserEvent(cl_context c, cl_int *errcode_ret) {
    CREATE_CALL(clCreateUserEvent, CL_OUT_OF_HOST_MEMORY, "cl_event", (c, errcode_ret));
}
CL_API_ENTRY cl_command_queue CL_API_CALL clCreateCommandQueue(cl_context c, cl_device_id d,
                                                               cl_command_queue_properties p,
                                                               cl_int *errcode_ret) {
    CREATE_CALL(clCreateCommandQueue, CL_OUT_OF_HOST_MEMORY, "cl_command_queue",
                (c, d, p, errcode_ret));
}
