/* Device choice and set-up for tests, bench and tools. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define MAXP 16
#define MAXD 64

static int enumerate(cl_platform_id *plats, cl_uint *np) {
    cl_int err = clGetPlatformIDs(MAXP, plats, np);
    if (err != CL_SUCCESS || *np == 0) {
        fprintf(stderr, "error: no OpenCL platform found (clGetPlatformIDs: %d). Install an "
                        "OpenCL driver, e.g. pocl-opencl-icd (ci/install-deps.sh).\n", err);
        return -1;
    }
    if (*np > MAXP) *np = MAXP;
    return 0;
}

void hx_device_list(FILE *f) {
    cl_platform_id plats[MAXP];
    cl_uint np = 0;
    if (enumerate(plats, &np)) return;
    for (cl_uint p = 0; p < np; p++) {
        char pname[256] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        cl_device_id devs[MAXD];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAXD, devs, &nd) != CL_SUCCESS) nd = 0;
        for (cl_uint d = 0; d < nd && d < MAXD; d++) {
            char name[256] = "";
            cl_device_type t = 0;
            cl_uint cu = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof name, name, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            fprintf(f, "  %u:%u  %-4s %s / %s (%u compute units)\n", p, d,
                    (t & CL_DEVICE_TYPE_GPU) ? "gpu" : (t & CL_DEVICE_TYPE_CPU) ? "cpu" : "acc",
                    pname, name, cu);
        }
    }
}

/* First device of `type` (any platform), or device P:D. */
static int find(const char *spec, cl_platform_id *plat, cl_device_id *dev) {
    cl_platform_id plats[MAXP];
    cl_uint np = 0;
    if (enumerate(plats, &np)) return -1;
    int wp = -1, wd = -1;
    cl_device_type type = CL_DEVICE_TYPE_ALL;
    if (!strcmp(spec, "gpu")) type = CL_DEVICE_TYPE_GPU;
    else if (!strcmp(spec, "cpu")) type = CL_DEVICE_TYPE_CPU;
    else if (sscanf(spec, "%d:%d", &wp, &wd) != 2) {
        fprintf(stderr, "error: --device '%s': expected gpu, cpu or P:D (see --list)\n", spec);
        return -1;
    }
    for (cl_uint p = 0; p < np; p++) {
        if (wp >= 0 && (int)p != wp) continue;
        cl_device_id devs[MAXD];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], type, MAXD, devs, &nd) != CL_SUCCESS || nd == 0) continue;
        if (wd >= (int)nd) break;
        *plat = plats[p];
        *dev = devs[wd >= 0 ? wd : 0];
        return 0;
    }
    return -1;
}

int hx_device_open(const char *spec, hx_device *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) spec = getenv("BINV_DEVICE");
    int found;
    if (spec && *spec) {
        found = find(spec, &out->platform, &out->device) == 0;
    } else {
        found = find("gpu", &out->platform, &out->device) == 0 ||
                find("0:0", &out->platform, &out->device) == 0 ||
                find("cpu", &out->platform, &out->device) == 0;
    }
    if (!found) {
        fprintf(stderr, "error: no OpenCL device matches '%s'. Devices:\n",
                spec ? spec : "default");
        hx_device_list(stderr);
        return -1;
    }
    cl_int err;
    out->context = clCreateContext(NULL, 1, &out->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "error: clCreateContext: %d\n", err);
        return -1;
    }
    out->queue = clCreateCommandQueue(out->context, out->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "error: clCreateCommandQueue: %d\n", err);
        clReleaseContext(out->context);
        out->context = NULL;
        return -1;
    }
    clGetDeviceInfo(out->device, CL_DEVICE_NAME, sizeof out->name, out->name, NULL);
    clGetDeviceInfo(out->device, CL_DEVICE_TYPE, sizeof out->type, &out->type, NULL);
    clGetPlatformInfo(out->platform, CL_PLATFORM_NAME, sizeof out->platform_name,
                      out->platform_name, NULL);
    return 0;
}

void hx_device_close(hx_device *d) {
    if (d->queue) clReleaseCommandQueue(d->queue);
    if (d->context) clReleaseContext(d->context);
    memset(d, 0, sizeof *d);
}

int hx_device_has_ext(cl_device_id d, const char *ext) {
    size_t len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS || !len) return 0;
    char *s = malloc(len + 1);
    if (!s) return 0;
    int found = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, len, s, NULL) == CL_SUCCESS) {
        s[len] = '\0';
        size_t el = strlen(ext);
        for (const char *p = s; (p = strstr(p, ext)) != NULL; p += el)
            if ((p == s || p[-1] == ' ') && (p[el] == ' ' || p[el] == '\0')) found = 1;
    }
    free(s);
    return found;
}

int hx_run_deadline(char *const argv[], long limit_s, char *why, size_t why_size) {
    extern char **environ;
    pid_t pid;
    const int err = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (err != 0) {
        snprintf(why, why_size, "%s did not start (%s)", argv[0], strerror(err));
        return -1;
    }
    int status = 0;
    long waited = 0; /* tenths of a second */
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && waited < limit_s * 10) {
        const struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited++;
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        snprintf(why, why_size, "did not finish in %ld s", limit_s);
        return -1;
    }
    if (w < 0) {
        snprintf(why, why_size, "waitpid failed (%s)", strerror(errno));
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(why, why_size, "killed by signal %d", WTERMSIG(status));
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, why_size, "exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    return 0;
}
