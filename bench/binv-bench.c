/* binv-bench — GEMM throughput of libbinv-cl next to CLBlast, plus a
 * batch-invariance check, in the LLM layout:
 *
 *   C[m, n] = A[m, k] * W[n, k]^T     (A row-major NO_TRANS, W = BINV_TRANS)
 *
 * For every (implementation, dtype, m, n, k) it reports the time of one call,
 * GFLOP/s (2mnk), the operand bandwidth (bytes of A + W + C over the time),
 * that bandwidth as a fraction of the device copy bandwidth measured at the
 * start of the same run, and the speed relative to CLBlast.  Row 0 of A holds
 * the same data for every m; the bit pattern of row 0 of C is kept for every
 * m and a summary at the end says whether it stayed the same (it must for
 * binv-invariant; binv-adaptive and CLBlast need not).
 *
 * `binv-bench --help` lists the options. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "binv/binv.h"
#ifdef BINV_HAVE_CLBLAST
#include <clblast_c.h>
#endif
#include "binv_bench_plot_gp.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: no platform installed */
#endif

#define MAX_LIST 64
#define MAX_DEVICES 64

/* ------------------------------------------------------------------------ */
/* Implementations                                                          */

enum { IMPL_CLBLAST = 0, IMPL_INVARIANT = 1, IMPL_ADAPTIVE = 2, IMPL_COUNT = 3 };
static const char *const impl_names[IMPL_COUNT] = {"clblast", "binv-invariant", "binv-adaptive"};

static const char *dtype_name(binv_dtype dt) {
    switch (dt) {
    case BINV_DTYPE_F32: return "f32";
    case BINV_DTYPE_F16: return "f16";
    case BINV_DTYPE_BF16: return "bf16";
    }
    return "?";
}
static size_t dtype_size(binv_dtype dt) { return dt == BINV_DTYPE_F32 ? 4 : 2; }

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

typedef struct options {
    const char *device;   /* NULL: first GPU of any platform, else first device */
    int list;
    int quick;
    const char *csv;
    binv_dtype dtypes[3];
    int ndtypes;
    int reps;             /* 0: 20 on a GPU, 3 otherwise */
    size_t ms[MAX_LIST];
    int nm;
    size_t ns[MAX_LIST], ks[MAX_LIST];
    int nnk;
    int run_invariant, run_adaptive;
    const char *plot_dir;
    int wcopies;          /* 0: automatic */
} options;

static void usage(FILE *f) {
    fprintf(f,
        "usage: binv-bench [options]\n"
        "  --device gpu|cpu|P:D   device: first GPU / first CPU of any platform, or platform P,\n"
        "                         device D as numbered by --list (default: first GPU, else the\n"
        "                         first device)\n"
        "  --list                 list platforms and devices, then exit\n"
        "  --quick                small CPU smoke run: m in {1,4,64}, (n,k) in {512x512, 72x1000}\n"
        "  --csv FILE             CSV output (default binv-bench-gemm.csv)\n"
        "  --dtype f32|f16|bf16|all   storage dtype(s) (default f32)\n"
        "  --reps N               timed repetitions per configuration, median reported\n"
        "                         (default 20 on a GPU, 3 otherwise)\n"
        "  --m LIST               comma-separated m values\n"
        "                         (default 1,2,4,8,16,32,64,128,512,2048,4096)\n"
        "  --nk LIST              comma-separated NxK pairs (W is N x K)\n"
        "                         (default 4096x4096,4096x14336,14336x4096)\n"
        "  --schedule invariant|adaptive|both   binv schedules to run (default both)\n"
        "  --weight-copies N      weight buffers to rotate through (default: enough for\n"
        "                         > 200 MB on a GPU so that W never sits in L2; 1 on a CPU\n"
        "                         or with --quick)\n"
        "  --plot DIR             write GFLOP/s-vs-m data files and PNGs (gnuplot) into DIR\n"
        "  --help                 this text\n");
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || v == 0 || v > 0x7fffffffULL) return 0;
    *out = (size_t)v;
    return (int)(end - s);
}

static int parse_m_list(const char *s, options *o) {
    o->nm = 0;
    while (*s) {
        size_t v;
        int len = parse_size(s, &v);
        if (!len || o->nm >= MAX_LIST) return 0;
        o->ms[o->nm++] = v;
        s += len;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return o->nm > 0;
}

static int parse_nk_list(const char *s, options *o) {
    o->nnk = 0;
    while (*s) {
        size_t n, k;
        int len = parse_size(s, &n);
        if (!len || o->nnk >= MAX_LIST) return 0;
        s += len;
        if (*s != 'x' && *s != 'X') return 0;
        s++;
        len = parse_size(s, &k);
        if (!len) return 0;
        s += len;
        o->ns[o->nnk] = n;
        o->ks[o->nnk] = k;
        o->nnk++;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return o->nnk > 0;
}

/* Returns 0 to go on, 1 on a usage error, 2 after --help. */
static int parse_args(int argc, char **argv, options *o) {
    static const size_t def_m[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 4096};
    static const size_t def_n[] = {4096, 4096, 14336}, def_k[] = {4096, 14336, 4096};
    static const size_t quick_m[] = {1, 4, 64};
    /* 72x1000: K is two chunks of the invariant schedule (the second partial),
     * and the few output tiles make the library split K on a small CPU. */
    static const size_t quick_n[] = {512, 72}, quick_k[] = {512, 1000};
    const char *m_list = NULL, *nk_list = NULL;
    memset(o, 0, sizeof *o);
    o->csv = "binv-bench-gemm.csv";
    o->dtypes[0] = BINV_DTYPE_F32;
    o->ndtypes = 1;
    o->run_invariant = o->run_adaptive = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        char name[32];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "binv-bench: unexpected argument '%s'\n", arg);
            return 1;
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof name) {
            fprintf(stderr, "binv-bench: unknown option '%s'\n", arg);
            return 1;
        }
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        static const char *const known[] = {"--help", "--list", "--quick", "--device", "--csv",
                                            "--dtype", "--reps", "--weight-copies", "--m",
                                            "--nk", "--schedule", "--plot"};
        int is_known = 0;
        for (size_t q = 0; q < sizeof known / sizeof *known; q++)
            is_known |= !strcmp(name, known[q]);
        if (!is_known) {
            fprintf(stderr, "binv-bench: unknown option '%s'\n", name);
            return 1;
        }
        int takes_value = strcmp(name, "--list") && strcmp(name, "--quick") &&
                          strcmp(name, "--help");
        if (takes_value) {
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                fprintf(stderr, "binv-bench: option %s needs a value\n", name);
                return 1;
            }
        } else if (eq) {
            fprintf(stderr, "binv-bench: option %s takes no value\n", name);
            return 1;
        }
        if (!strcmp(name, "--help")) {
            usage(stdout);
            return 2;
        } else if (!strcmp(name, "--list")) {
            o->list = 1;
        } else if (!strcmp(name, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(name, "--device")) {
            o->device = val;
        } else if (!strcmp(name, "--csv")) {
            if (!*val) { fprintf(stderr, "binv-bench: --csv needs a file name\n"); return 1; }
            o->csv = val;
        } else if (!strcmp(name, "--dtype")) {
            if (!strcmp(val, "f32")) { o->dtypes[0] = BINV_DTYPE_F32; o->ndtypes = 1; }
            else if (!strcmp(val, "f16")) { o->dtypes[0] = BINV_DTYPE_F16; o->ndtypes = 1; }
            else if (!strcmp(val, "bf16")) { o->dtypes[0] = BINV_DTYPE_BF16; o->ndtypes = 1; }
            else if (!strcmp(val, "all")) {
                o->dtypes[0] = BINV_DTYPE_F32;
                o->dtypes[1] = BINV_DTYPE_F16;
                o->dtypes[2] = BINV_DTYPE_BF16;
                o->ndtypes = 3;
            } else {
                fprintf(stderr, "binv-bench: --dtype must be f32, f16, bf16 or all, not '%s'\n",
                        val);
                return 1;
            }
        } else if (!strcmp(name, "--reps")) {
            size_t v;
            if (parse_size(val, &v) != (int)strlen(val) || v > 100000) {
                fprintf(stderr, "binv-bench: --reps needs an integer in 1..100000, not '%s'\n",
                        val);
                return 1;
            }
            o->reps = (int)v;
        } else if (!strcmp(name, "--weight-copies")) {
            size_t v;
            if (parse_size(val, &v) != (int)strlen(val) || v > 1024) {
                fprintf(stderr, "binv-bench: --weight-copies needs an integer in 1..1024\n");
                return 1;
            }
            o->wcopies = (int)v;
        } else if (!strcmp(name, "--m")) {
            m_list = val;
        } else if (!strcmp(name, "--nk")) {
            nk_list = val;
        } else if (!strcmp(name, "--schedule")) {
            if (!strcmp(val, "invariant")) { o->run_invariant = 1; o->run_adaptive = 0; }
            else if (!strcmp(val, "adaptive")) { o->run_invariant = 0; o->run_adaptive = 1; }
            else if (!strcmp(val, "both")) { o->run_invariant = 1; o->run_adaptive = 1; }
            else {
                fprintf(stderr, "binv-bench: --schedule must be invariant, adaptive or both\n");
                return 1;
            }
        } else if (!strcmp(name, "--plot")) {
            if (!*val || strpbrk(val, "'\"\\$`\n")) {
                fprintf(stderr, "binv-bench: --plot needs a directory name without quotes, "
                                "backslashes, '$' or '`'\n");
                return 1;
            }
            o->plot_dir = val;
        } else {
            fprintf(stderr, "binv-bench: unknown option '%s' (see --help)\n", name);
            return 1;
        }
    }
    /* Size lists: --m / --nk win over --quick, which wins over the default. */
    if (m_list) {
        if (!parse_m_list(m_list, o)) {
            fprintf(stderr, "binv-bench: --m needs a comma-separated list of at most %d "
                            "integers in 1..2^31-1, not '%s'\n", MAX_LIST, m_list);
            return 1;
        }
    } else {
        const size_t *src = o->quick ? quick_m : def_m;
        o->nm = o->quick ? 3 : 11;
        memcpy(o->ms, src, (size_t)o->nm * sizeof *src);
    }
    if (nk_list) {
        if (!parse_nk_list(nk_list, o)) {
            fprintf(stderr, "binv-bench: --nk needs a comma-separated list like "
                            "4096x4096,4096x14336, not '%s'\n", nk_list);
            return 1;
        }
    } else {
        o->nnk = o->quick ? 2 : 3;
        memcpy(o->ns, o->quick ? quick_n : def_n, (size_t)o->nnk * sizeof(size_t));
        memcpy(o->ks, o->quick ? quick_k : def_k, (size_t)o->nnk * sizeof(size_t));
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* Every error path prints one message through here and unwinds to main,
 * which frees everything and exits with status 1. */
static int fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int fail(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("binv-bench: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

#define CL_TRY(call, what)                                                            \
    do {                                                                              \
        cl_int e_ = (call);                                                           \
        if (e_ != CL_SUCCESS) return fail("%s failed: OpenCL error %d", (what), (int)e_); \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Host data: splitmix64, f16 / bf16 conversion                              */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* f32 -> f16, round to nearest even. */
static uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* >= 65520: inf */
    if (ax < 0x38800000u) {                                         /* below 2^-14 */
        /* Subnormal (or zero) half: the value in units of 2^-24.  The
         * scaling by a power of two is exact; lrintf rounds to even. */
        long v = lrintf(bits_f32(ax) * 16777216.0f);
        return (uint16_t)(sign | (uint16_t)v);
    }
    uint32_t h = ((((ax >> 23) - 127u + 15u) << 10) | ((ax & 0x7fffffu) >> 13));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e - 15u + 127u) << 23) | (m << 13));
}

/* f32 -> bf16, round to nearest even (inputs here are finite). */
static uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static float load_elem(binv_dtype dt, const unsigned char *p, size_t i) {
    if (dt == BINV_DTYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dt == BINV_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

/* Fills `count` storage words of dtype (into store) and their exact f32 values
 * (into vals).  Values are uniform in (-1, 1) with a full mantissa: never 0
 * and never a power of two (the lowest mantissa bit is forced on when the
 * rounded value would have an all-zero mantissa), so sums of products round
 * and any change of reduction order shows in the bits. */
static void fill_data(binv_dtype dt, unsigned char *store, float *vals, size_t count,
                      uint64_t *seed) {
    for (size_t i = 0; i < count; i++) {
        int32_t r = (int32_t)(splitmix64(seed) >> 40) - (1 << 23); /* [-2^23, 2^23) */
        float f = (float)r * 0x1p-23f;
        if (r == 0) f = 0.3671875f;
        if (dt == BINV_DTYPE_F32) {
            uint32_t u = f32_bits(f);
            if ((u & 0x7fffffu) == 0) u |= 1u;
            memcpy(store + 4 * i, &u, 4);
            vals[i] = bits_f32(u);
        } else {
            uint16_t h = dt == BINV_DTYPE_F16 ? f32_to_f16(f) : f32_to_bf16(f);
            uint16_t mant_mask = dt == BINV_DTYPE_F16 ? 0x3ffu : 0x7fu;
            if ((h & mant_mask) == 0) h |= 1u;
            memcpy(store + 2 * i, &h, 2);
            vals[i] = dt == BINV_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
}

static uint64_t fnv1a64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ------------------------------------------------------------------------ */
/* Timing                                                                   */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */

typedef struct result {
    binv_dtype dtype;
    size_t m, n, k;
    int impl;
    int available;         /* 0: n/a (e.g. CLBlast HGEMM without cl_khr_fp16) */
    int reps, inner, wcopies;
    double ms, gflops, gbs, frac, vs_clblast; /* vs_clblast < 0: n/a */
    double err0, errlast;
    int check_ok;
    uint64_t row0_hash;
} result;

typedef struct inv_summary {
    binv_dtype dtype;
    size_t n, k;
    int impl;
    int nm;                /* m values measured */
    int distinct;          /* distinct row-0 bit patterns among them */
} inv_summary;

typedef struct bench {
    options opt;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    binv_context *binv[2]; /* [0] invariant, [1] adaptive */
    char device_name[256], platform_name[256];
    cl_device_type type;
    int is_gpu, has_fp16;
    cl_uint compute_units;
    cl_ulong global_mem, max_alloc;
    int reps;
    double copy_gbs;
    FILE *csv;

    /* Per (dtype, n, k). */
    cl_mem a, c;
    cl_mem *w;
    int nw;
    unsigned long rot;     /* next weight copy to use */
    float *fa, *fw;        /* exact f32 values of A (max m rows) and W */
    double *ref0, *reflast;/* reference rows 0 and m-1 of C */
    double *mag0, *maglast;/* and their term magnitudes */
    unsigned char *crow;   /* one row of C read back */
    unsigned char *pat[IMPL_COUNT]; /* distinct row-0 patterns, MAX_LIST * n * esz each */
    int npat[IMPL_COUNT], nmeas[IMPL_COUNT];

    result *res;
    size_t nres, capres;
    inv_summary *inv;
    size_t ninv, capinv;
    int any_bad;
} bench;

static int impl_selected(const bench *b, int impl) {
    switch (impl) {
#ifdef BINV_HAVE_CLBLAST
    case IMPL_CLBLAST: return 1;
#endif
    case IMPL_INVARIANT: return b->opt.run_invariant;
    case IMPL_ADAPTIVE: return b->opt.run_adaptive;
    }
    return 0;
}

/* Whether impl can run dtype on this device (an "n/a" cell otherwise). */
static int impl_supports(const bench *b, int impl, binv_dtype dt) {
    if (impl != IMPL_CLBLAST) return 1;
    if (dt == BINV_DTYPE_F32) return 1;
    if (dt == BINV_DTYPE_F16) return b->has_fp16; /* CLBlast HGEMM computes in half */
    return 0;                                    /* CLBlast has no bf16 */
}

/* ------------------------------------------------------------------------ */
/* Devices                                                                  */

static int get_platforms(cl_platform_id **out, cl_uint *n) {
    *out = NULL;
    *n = 0;
    cl_int err = clGetPlatformIDs(0, NULL, n);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && *n == 0))
        return fail("no OpenCL platform found (is an ICD installed? see /etc/OpenCL/vendors)");
    CL_TRY(err, "clGetPlatformIDs");
    *out = calloc(*n, sizeof **out);
    if (!*out) return fail("out of host memory");
    err = clGetPlatformIDs(*n, *out, NULL);
    if (err != CL_SUCCESS) {
        free(*out);
        *out = NULL;
        return fail("clGetPlatformIDs failed: OpenCL error %d", (int)err);
    }
    return 0;
}

/* Devices of one platform (none is not an error). */
static cl_uint get_devices(cl_platform_id p, cl_device_id *devs, cl_uint max) {
    cl_uint n = 0;
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, max, devs, &n) != CL_SUCCESS) return 0;
    return n < max ? n : max;
}

static const char *type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "ACCEL";
    return "OTHER";
}

static int device_has_ext(cl_device_id d, const char *ext) {
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

static int list_devices(void) {
    cl_platform_id *plats;
    cl_uint np;
    if (get_platforms(&plats, &np)) return 1;
    for (cl_uint p = 0; p < np; p++) {
        char pname[256] = "?";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        printf("platform %u: %s\n", p, pname);
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = get_devices(plats[p], devs, MAX_DEVICES);
        for (cl_uint d = 0; d < nd; d++) {
            char dname[256] = "?";
            cl_device_type t = 0;
            cl_uint cu = 0;
            cl_ulong mem = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname, dname, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            printf("  --device %u:%u  %-5s %s  (%u compute units, %.1f GiB, fp16 %s)\n", p, d,
                   type_name(t), dname, cu, (double)mem / (1024.0 * 1024.0 * 1024.0),
                   device_has_ext(devs[d], "cl_khr_fp16") ? "yes" : "no");
        }
        if (nd == 0) printf("  (no devices)\n");
    }
    free(plats);
    return 0;
}

/* --device: "gpu" / "cpu" = first device of that type over all platforms (on
 * a machine with both NVIDIA's platform and PoCL the platform order says
 * nothing); "P:D" = indices as --list prints them; default: first GPU, else
 * the first device of any platform. */
static int pick_device(bench *b) {
    const char *spec = b->opt.device;
    cl_platform_id *plats;
    cl_uint np;
    if (get_platforms(&plats, &np)) return 1;
    int want_p = -1, want_d = -1;
    cl_device_type want_type = 0;
    if (spec && !strcmp(spec, "gpu")) {
        want_type = CL_DEVICE_TYPE_GPU;
    } else if (spec && !strcmp(spec, "cpu")) {
        want_type = CL_DEVICE_TYPE_CPU;
    } else if (spec) {
        char tail;
        if (sscanf(spec, "%d:%d%c", &want_p, &want_d, &tail) != 2 || want_p < 0 || want_d < 0) {
            free(plats);
            return fail("--device must be gpu, cpu or P:D (e.g. 0:0), not '%s'", spec);
        }
    }
    int found = 0;
    cl_platform_id first_p = NULL;
    cl_device_id first_d = NULL;
    for (cl_uint p = 0; p < np && !found; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = get_devices(plats[p], devs, MAX_DEVICES);
        for (cl_uint d = 0; d < nd && !found; d++) {
            cl_device_type t = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (!first_d) {
                first_p = plats[p];
                first_d = devs[d];
            }
            int match;
            if (want_p >= 0) match = (int)p == want_p && (int)d == want_d;
            else if (want_type) match = (t & want_type) != 0;
            else match = (t & CL_DEVICE_TYPE_GPU) != 0;
            if (match) {
                b->platform = plats[p];
                b->device = devs[d];
                found = 1;
            }
        }
    }
    free(plats);
    if (!found && !spec && first_d) {
        b->platform = first_p;
        b->device = first_d;
        found = 1;
    }
    if (!found) {
        if (!spec) return fail("no OpenCL device found on any platform");
        return fail("no OpenCL device matches --device %s (see --list)", spec);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Device copy bandwidth                                                    */

/* One float4 per work-item: the plainest streaming kernel, as a yardstick. */
static const char copy_source[] =
    "__kernel void binv_bench_copy(__global const float4 *restrict src,\n"
    "                              __global float4 *restrict dst) {\n"
    "    size_t i = get_global_id(0);\n"
    "    dst[i] = src[i];\n"
    "}\n";

/* Copy bandwidth = (bytes read + bytes written) / time, the same convention
 * as the GEMM operand bandwidth below.  A 512 MiB buffer on a GPU (1 GiB of
 * traffic per copy, far beyond any L2), 128 MiB on a CPU or with --quick;
 * median of several repetitions of a timed batch of copies. */
static int measure_copy_bandwidth(bench *b) {
    size_t bytes = (b->is_gpu && !b->opt.quick) ? (size_t)512 << 20 : (size_t)128 << 20;
    while (bytes > b->max_alloc || 2 * (cl_ulong)bytes > b->global_mem / 2) bytes /= 2;
    bytes &= ~(size_t)15;
    int rc = 0;
    cl_int err;
    cl_program prog = NULL;
    cl_kernel kern = NULL;
    cl_mem src = NULL, dst = NULL;
    const char *srcs[1] = {copy_source};
    double *times = NULL;
    int reps = b->is_gpu ? 10 : 5;

    prog = clCreateProgramWithSource(b->context, 1, srcs, NULL, &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateProgramWithSource(copy) failed: %d", (int)err);
        goto done;
    }
    err = clBuildProgram(prog, 1, &b->device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(prog, b->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        rc = fail("building the copy kernel failed: %d\n%s", (int)err, log);
        goto done;
    }
    kern = clCreateKernel(prog, "binv_bench_copy", &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateKernel(copy) failed: %d", (int)err);
        goto done;
    }
    src = clCreateBuffer(b->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateBuffer(%zu bytes) failed: %d", bytes, (int)err);
        goto done;
    }
    dst = clCreateBuffer(b->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateBuffer(%zu bytes) failed: %d", bytes, (int)err);
        goto done;
    }
    const float pattern = 1.25f;
    err = clEnqueueFillBuffer(b->queue, src, &pattern, sizeof pattern, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(b->queue, dst, &pattern, sizeof pattern, 0, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        rc = fail("clEnqueueFillBuffer failed: %d", (int)err);
        goto done;
    }
    err = clSetKernelArg(kern, 0, sizeof src, &src);
    if (err == CL_SUCCESS) err = clSetKernelArg(kern, 1, sizeof dst, &dst);
    if (err != CL_SUCCESS) {
        rc = fail("clSetKernelArg(copy) failed: %d", (int)err);
        goto done;
    }
    size_t gws = bytes / 16;
    /* Warm-up, and a calibration of how many copies make a batch of >= 10 ms
     * on a GPU so that the launch and clFinish latency do not count. */
    double t0 = now_s();
    err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clFinish(b->queue);
    if (err != CL_SUCCESS) {
        rc = fail("copy kernel failed: OpenCL error %d", (int)err);
        goto done;
    }
    double t1 = now_s();
    int inner = 1;
    if (b->is_gpu) {
        double one = t1 - t0;
        inner = one > 0 ? (int)ceil(0.010 / one) : 16;
        if (inner < 1) inner = 1;
        if (inner > 64) inner = 64;
    }
    times = calloc((size_t)reps, sizeof *times);
    if (!times) { rc = fail("out of host memory"); goto done; }
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        for (int i = 0; i < inner && err == CL_SUCCESS; i++)
            err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
        if (err == CL_SUCCESS) err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
        rc = fail("copy kernel failed: OpenCL error %d", (int)err);
        goto done;
    }
        times[r] = (now_s() - t0) / inner;
    }
    double t = median(times, reps);
    b->copy_gbs = 2.0 * (double)bytes / t * 1e-9;
    printf("copy bandwidth: %.1f GB/s  (float4 copy kernel, %zu MiB -> %zu MiB = %.2f GiB "
           "read+written per copy, median of %d x %d copies)\n",
           b->copy_gbs, bytes >> 20, bytes >> 20, 2.0 * (double)bytes / (1 << 30), reps, inner);
done:
    free(times);
    if (src) clReleaseMemObject(src);
    if (dst) clReleaseMemObject(dst);
    if (kern) clReleaseKernel(kern);
    if (prog) clReleaseProgram(prog);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                     */

static int gemm_call(bench *b, int impl, binv_dtype dt, size_t m, size_t n, size_t k, cl_mem w) {
    if (impl == IMPL_CLBLAST) {
#ifdef BINV_HAVE_CLBLAST
        CLBlastStatusCode s;
        if (dt == BINV_DTYPE_F32) {
            s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n,
                             k, 1.0f, b->a, 0, k, w, 0, k, 0.0f, b->c, 0, n, &b->queue, NULL);
        } else {
            const cl_half one = 0x3c00, zero = 0;
            s = CLBlastHgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n,
                             k, one, b->a, 0, k, w, 0, k, zero, b->c, 0, n, &b->queue, NULL);
        }
        if (s != CLBlastSuccess)
            return fail("CLBlast%cgemm(m=%zu n=%zu k=%zu) failed: CLBlast status %d",
                        dt == BINV_DTYPE_F32 ? 'S' : 'H', m, n, k, (int)s);
        return 0;
#else
        return fail("internal: CLBlast is not compiled in");
#endif
    }
    binv_context *ctx = b->binv[impl == IMPL_INVARIANT ? 0 : 1];
    binv_status st = binv_gemm(ctx, b->queue, dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f, b->a,
                               0, k, w, 0, k, 0.0f, b->c, 0, n, 0, NULL, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv_gemm(%s, %s, m=%zu n=%zu k=%zu) failed: %s (%d): %s", impl_names[impl],
                    dtype_name(dt), m, n, k, binv_status_string(st), st,
                    binv_context_last_error(ctx));
    return 0;
}

/* Max over j of |c_j - ref_j| / mag_j with mag_j = sum_p |a_p w_jp|: the
 * error relative to the size of the terms, meaningful whatever the
 * cancellation.  The row of C read back is in b->crow. */
static double row_error(const bench *b, binv_dtype dt, const double *ref, const double *mag,
                        size_t n) {
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double e = fabs((double)load_elem(dt, b->crow, j) - ref[j]);
        if (isnan(e)) return INFINITY;
        e = mag[j] > 0 ? e / mag[j] : e;
        if (e > worst) worst = e;
    }
    return worst;
}

/* Row of A times W^T in double (exact products, tiny rounding), and the
 * magnitudes sum_p |a_p w_jp|. */
static void reference_row(const bench *b, const float *arow, size_t n, size_t k, double *ref,
                          double *mag) {
    for (size_t j = 0; j < n; j++) {
        const float *wr = b->fw + j * k;
        double s = 0, t = 0;
        for (size_t p = 0; p < k; p++) {
            double v = (double)arow[p] * (double)wr[p];
            s += v;
            t += fabs(v);
        }
        ref[j] = s;
        mag[j] = t;
    }
}

/* Generous bounds that still catch a wrong layout, a lost chunk or garbage:
 * f32 accumulation (binv for every dtype) errs by well under 1e-4 of the
 * term magnitude at these k; storage rounding adds 2^-11 (f16) or 2^-8
 * (bf16); CLBlast HGEMM also accumulates in half. */
static double error_tolerance(int impl, binv_dtype dt) {
    if (dt == BINV_DTYPE_F32) return 1e-3;
    if (dt == BINV_DTYPE_BF16) return 2e-2;
    return impl == IMPL_CLBLAST ? 5e-2 : 1e-2;
}

static int read_row(bench *b, binv_dtype dt, size_t row, size_t n) {
    size_t esz = dtype_size(dt);
    CL_TRY(clEnqueueReadBuffer(b->queue, b->c, CL_TRUE, row * n * esz, n * esz, b->crow, 0, NULL,
                               NULL),
           "clEnqueueReadBuffer(C row)");
    return 0;
}

static int push_result(bench *b, const result *r) {
    if (b->nres == b->capres) {
        size_t cap = b->capres ? 2 * b->capres : 64;
        result *p = realloc(b->res, cap * sizeof *p);
        if (!p) return fail("out of host memory");
        b->res = p;
        b->capres = cap;
    }
    b->res[b->nres++] = *r;
    return 0;
}

static void csv_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv_row(bench *b, const result *r) {
    FILE *f = b->csv;
    csv_string(f, b->device_name);
    fprintf(f, ",%s,%s,%zu,%zu,%zu,", dtype_name(r->dtype), impl_names[r->impl], r->m, r->n, r->k);
    if (!r->available) {
        fprintf(f, "n/a,,,,,,,%.3f,,,,,,\n", b->copy_gbs);
        return;
    }
    fprintf(f, "ok,%d,%d,%d,%.6f,%.3f,%.3f,%.3f,%.4f,", r->reps, r->inner, r->wcopies, r->ms,
            r->gflops, r->gbs, b->copy_gbs, r->frac);
    if (r->vs_clblast >= 0) fprintf(f, "%.4f", r->vs_clblast);
    fprintf(f, ",%.3e,%.3e,%s,%016llx\n", r->err0, r->errlast, r->check_ok ? "ok" : "BAD",
            (unsigned long long)r->row0_hash);
}

static void print_table_header(void) {
    printf("%-15s %-5s %5s %6s %6s %6s %10s %9s %8s %6s %8s %8s %5s\n", "impl", "dtype", "m", "n",
           "k", "calls", "ms", "GFLOP/s", "GB/s", "%BW", "vs-clbl", "err", "check");
}

static void print_row(const result *r) {
    printf("%-15s %-5s %5zu %6zu %6zu ", impl_names[r->impl], dtype_name(r->dtype), r->m, r->n,
           r->k);
    if (!r->available) {
        printf("%6s %10s %9s %8s %6s %8s %8s %5s\n", "-", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a",
               "-");
    } else {
        char vs[16];
        if (r->vs_clblast >= 0) snprintf(vs, sizeof vs, "%.2fx", r->vs_clblast);
        else snprintf(vs, sizeof vs, "n/a");
        double err = r->err0 > r->errlast ? r->err0 : r->errlast;
        printf("%6d %10.4f %9.1f %8.1f %5.1f%% %8s %8.1e %5s\n", r->reps * r->inner, r->ms,
               r->gflops, r->gbs, 100.0 * r->frac, vs, err, r->check_ok ? "ok" : "BAD");
    }
    fflush(stdout);
}

/* Times one configuration.  Wall clock around a batch of back-to-back calls
 * closed by one clFinish, divided by the batch size; median over reps.
 * Not profiling events: binv_gemm may enqueue two kernels (split-K partials,
 * then the ordered reduction) and returns an event for the last only, and
 * CLBlast may add transpose/pad kernels, so events would miss work.  The
 * batch amortises the clFinish round trip the way a pipelined inference loop
 * does; host-side cost per call (argument checks, launches) is included, as
 * it is for a real caller.  Calls rotate through the weight copies. */
static int time_config(bench *b, int impl, binv_dtype dt, size_t m, size_t n, size_t k,
                       double *ms, int *inner_out) {
    /* Warm-up: the first calls build programs (binv's lazily, CLBlast's per
     * kernel variant) and wake the device up; >= 3 calls and >= 50 ms (at
     * most 100 calls), none timed. */
    double w0 = now_s();
    for (int i = 0; i < 100; i++) {
        if (gemm_call(b, impl, dt, m, n, k, b->w[b->rot++ % (unsigned long)b->nw])) return 1;
        CL_TRY(clFinish(b->queue), "clFinish");
        if (i >= 2 && now_s() - w0 >= 0.050) break;
    }
    /* Calibrate: batches of >= ~2 ms on a GPU (>= ~20 ms on a CPU, whose
     * thread wake-ups are noisier), at most 200 calls. */
    double t0 = now_s();
    if (gemm_call(b, impl, dt, m, n, k, b->w[b->rot++ % (unsigned long)b->nw])) return 1;
    CL_TRY(clFinish(b->queue), "clFinish");
    double one = now_s() - t0, target = b->is_gpu ? 0.002 : 0.020;
    int inner = one > 0 && one < target ? (int)ceil(target / one) : 1;
    if (inner > 200) inner = 200;
    double *times = calloc((size_t)b->reps, sizeof *times);
    if (!times) return fail("out of host memory");
    for (int r = 0; r < b->reps; r++) {
        t0 = now_s();
        for (int i = 0; i < inner; i++)
            if (gemm_call(b, impl, dt, m, n, k, b->w[b->rot++ % (unsigned long)b->nw])) {
                free(times);
                return 1;
            }
        cl_int err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
            free(times);
            return fail("clFinish failed: OpenCL error %d", (int)err);
        }
        times[r] = (now_s() - t0) / inner;
    }
    *ms = 1e3 * median(times, b->reps);
    *inner_out = inner;
    free(times);
    return 0;
}

/* Records row 0 of C for the invariance summary. */
static int record_row0(bench *b, int impl, size_t n, size_t esz) {
    size_t row = n * esz;
    if (!b->pat[impl]) {
        b->pat[impl] = malloc((size_t)MAX_LIST * row);
        if (!b->pat[impl]) return fail("out of host memory");
    }
    b->nmeas[impl]++;
    for (int i = 0; i < b->npat[impl]; i++)
        if (!memcmp(b->pat[impl] + (size_t)i * row, b->crow, row)) return 0;
    memcpy(b->pat[impl] + (size_t)b->npat[impl] * row, b->crow, row);
    b->npat[impl]++;
    return 0;
}

static void free_shape(bench *b) {
    if (b->a) clReleaseMemObject(b->a);
    if (b->c) clReleaseMemObject(b->c);
    for (int i = 0; i < b->nw; i++)
        if (b->w[i]) clReleaseMemObject(b->w[i]);
    free(b->w);
    free(b->fa);
    free(b->fw);
    free(b->ref0);
    free(b->reflast);
    free(b->mag0);
    free(b->maglast);
    free(b->crow);
    for (int i = 0; i < IMPL_COUNT; i++) {
        free(b->pat[i]);
        b->pat[i] = NULL;
        b->npat[i] = b->nmeas[i] = 0;
    }
    b->a = b->c = NULL;
    b->w = NULL;
    b->nw = 0;
    b->fa = b->fw = NULL;
    b->ref0 = b->reflast = b->mag0 = b->maglast = NULL;
    b->crow = NULL;
}

static int create_buffer(bench *b, size_t bytes, const void *init, cl_mem *out, const char *what) {
    cl_int err;
    if ((cl_ulong)bytes > b->max_alloc)
        return fail("%s needs %zu bytes, more than CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu): use "
                    "smaller --m / --nk", what, bytes, (unsigned long long)b->max_alloc);
    *out = clCreateBuffer(b->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return fail("clCreateBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    if (init) {
        err = clEnqueueWriteBuffer(b->queue, *out, CL_TRUE, 0, bytes, init, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return fail("clEnqueueWriteBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    }
    return 0;
}

/* Allocates and fills A (max m rows), the weight copies and C for (dtype, n, k). */
static int setup_shape(bench *b, binv_dtype dt, size_t n, size_t k, size_t max_m) {
    size_t esz = dtype_size(dt);
    size_t bytes_a = max_m * k * esz, bytes_w = n * k * esz, bytes_c = max_m * n * esz;
    unsigned char *store = NULL;
    int rc = 0;
    if (max_m > SIZE_MAX / k / 4 || n > SIZE_MAX / k / 4 || max_m > SIZE_MAX / n / 4)
        return fail("sizes overflow size_t");

    /* Weight copies: rotate through enough distinct buffers (> 200 MB) that a
     * weight read at small m comes from DRAM, not from the L2 the previous
     * call left it in (H100: 50 MB of L2).  All copies hold the same data. */
    int copies = b->opt.wcopies;
    if (!copies) {
        copies = 1;
        if (b->is_gpu && !b->opt.quick) copies = (int)((200000000 + bytes_w - 1) / bytes_w) + 1;
        /* Leave room: keep everything under 70% of the device memory. */
        double budget = 0.7 * (double)b->global_mem - (double)bytes_a - (double)bytes_c;
        int fit = budget > 0 ? (int)(budget / (double)bytes_w) : 0;
        if (copies > fit) copies = fit > 1 ? fit : 1;
        if (b->is_gpu && !b->opt.quick && copies * (double)bytes_w < 200e6)
            printf("note: only %d weight copies (%.0f MB) fit: small-m results may be served "
                   "from L2\n", copies, copies * (double)bytes_w * 1e-6);
    }

    /* Device limits first, before any large host allocation. */
    const char *names[3] = {"A", "W", "C"};
    size_t sizes[3] = {bytes_a, bytes_w, bytes_c};
    for (int i = 0; i < 3; i++)
        if ((cl_ulong)sizes[i] > b->max_alloc)
            return fail("%s (n=%zu k=%zu, max m=%zu) needs %zu bytes, more than "
                        "CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu): use smaller --m / --nk", names[i],
                        n, k, max_m, sizes[i], (unsigned long long)b->max_alloc);
    if ((double)bytes_a + (double)bytes_c + (double)copies * (double)bytes_w >
        0.9 * (double)b->global_mem)
        return fail("A, C and %d weight cop%s (n=%zu k=%zu, max m=%zu) need %.0f MB, more than "
                    "90%% of the device memory (%.0f MB): use smaller --m / --nk%s", copies,
                    copies == 1 ? "y" : "ies", n, k, max_m,
                    ((double)bytes_a + (double)bytes_c + (double)copies * (double)bytes_w) * 1e-6,
                    (double)b->global_mem * 1e-6, b->opt.wcopies ? " / --weight-copies" : "");

    b->fa = malloc(max_m * k * sizeof(float));
    b->fw = malloc(n * k * sizeof(float));
    b->ref0 = malloc(n * sizeof(double));
    b->reflast = malloc(n * sizeof(double));
    b->mag0 = malloc(n * sizeof(double));
    b->maglast = malloc(n * sizeof(double));
    b->crow = malloc(n * esz);
    b->w = calloc((size_t)copies, sizeof *b->w);
    store = malloc(bytes_a > bytes_w ? bytes_a : bytes_w);
    if (!b->fa || !b->fw || !b->ref0 || !b->reflast || !b->mag0 || !b->maglast || !b->crow ||
        !b->w || !store) {
        rc = fail("out of host memory (n=%zu k=%zu, max m=%zu)", n, k, max_m);
        goto done;
    }
    b->nw = copies;

    /* A: row 0 from its own seed (the same bits for every m, dtype and
     * shape's k prefix), rows 1.. from another. */
    uint64_t seed = 0x5eed0000a0ULL ^ ((uint64_t)dt << 56);
    fill_data(dt, store, b->fa, k, &seed);
    seed = 0x5eed0001a1ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)k << 20);
    if (max_m > 1) fill_data(dt, store + k * esz, b->fa + k, (max_m - 1) * k, &seed);
    if ((rc = create_buffer(b, bytes_a, store, &b->a, "A"))) goto done;
    seed = 0x5eed0002b2ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)n << 32) ^ k;
    fill_data(dt, store, b->fw, n * k, &seed);
    for (int i = 0; i < copies; i++)
        if ((rc = create_buffer(b, bytes_w, store, &b->w[i], "W"))) goto done;
    if ((rc = create_buffer(b, bytes_c, NULL, &b->c, "C"))) goto done;
    reference_row(b, b->fa, n, k, b->ref0, b->mag0);
    printf("weights: %d cop%s of %.1f MB rotated; operand bytes = esz*(m*k + n*k + m*n): A and W "
           "read once, C written once\n",
           copies, copies == 1 ? "y" : "ies", (double)bytes_w * 1e-6);
done:
    free(store);
    return rc;
}

static int run_shape(bench *b, binv_dtype dt, size_t n, size_t k) {
    size_t max_m = 0, esz = dtype_size(dt);
    for (int i = 0; i < b->opt.nm; i++)
        if (b->opt.ms[i] > max_m) max_m = b->opt.ms[i];
    printf("\n== %s  n=%zu k=%zu  (invariant K chunk %zu) ==\n", dtype_name(dt), n, k,
           binv_gemm_chunk_size(dt, k));
    if (setup_shape(b, dt, n, k, max_m)) return 1;
    print_table_header();
    for (int mi = 0; mi < b->opt.nm; mi++) {
        size_t m = b->opt.ms[mi];
        double clblast_ms = -1;
        int have_last = 0;
        for (int impl = 0; impl < IMPL_COUNT; impl++) {
            if (!impl_selected(b, impl)) continue;
            result r;
            memset(&r, 0, sizeof r);
            r.dtype = dt;
            r.m = m;
            r.n = n;
            r.k = k;
            r.impl = impl;
            r.vs_clblast = -1;
            r.available = impl_supports(b, impl, dt);
            if (r.available) {
                /* C starts as NaN for binv (beta = 0 must not read it) and as
                 * zeros for CLBlast (whose beta = 0 handling is not ours to
                 * test); either way stale results cannot pass the check. */
                const unsigned char nan_byte = 0xff, zero_byte = 0;
                CL_TRY(clEnqueueFillBuffer(b->queue, b->c,
                                           impl == IMPL_CLBLAST ? &zero_byte : &nan_byte, 1, 0,
                                           m * n * esz, 0, NULL, NULL),
                       "clEnqueueFillBuffer(C)");
                if (time_config(b, impl, dt, m, n, k, &r.ms, &r.inner)) return 1;
                r.reps = b->reps;
                r.wcopies = b->nw;
                double s = r.ms * 1e-3;
                r.gflops = 2.0 * (double)m * (double)n * (double)k / s * 1e-9;
                double elems = (double)m * (double)k + (double)n * (double)k +
                               (double)m * (double)n;
                r.gbs = (double)esz * elems / s * 1e-9;
                r.frac = b->copy_gbs > 0 ? r.gbs / b->copy_gbs : 0;
                if (impl == IMPL_CLBLAST) clblast_ms = r.ms;
                if (clblast_ms > 0) r.vs_clblast = clblast_ms / r.ms;
                /* Every call wrote all of C with the same inputs (the weight
                 * copies are identical): check rows 0 and m-1 of the last. */
                if (read_row(b, dt, 0, n)) return 1;
                r.row0_hash = fnv1a64(b->crow, n * esz);
                if (record_row0(b, impl, n, esz)) return 1;
                r.err0 = row_error(b, dt, b->ref0, b->mag0, n);
                if (m > 1) {
                    if (!have_last) {
                        reference_row(b, b->fa + (m - 1) * k, n, k, b->reflast, b->maglast);
                        have_last = 1;
                    }
                    if (read_row(b, dt, m - 1, n)) return 1;
                    r.errlast = row_error(b, dt, b->reflast, b->maglast, n);
                } else {
                    r.errlast = r.err0;
                }
                double tol = error_tolerance(impl, dt);
                r.check_ok = r.err0 <= tol && r.errlast <= tol;
                if (!r.check_ok) b->any_bad = 1;
            }
            print_row(&r);
            write_csv_row(b, &r);
            if (push_result(b, &r)) return 1;
        }
    }
    /* Invariance of row 0 across m for this shape. */
    for (int impl = 0; impl < IMPL_COUNT; impl++) {
        if (!impl_selected(b, impl) || !b->nmeas[impl]) continue;
        if (b->ninv == b->capinv) {
            size_t cap = b->capinv ? 2 * b->capinv : 16;
            inv_summary *p = realloc(b->inv, cap * sizeof *p);
            if (!p) return fail("out of host memory");
            b->inv = p;
            b->capinv = cap;
        }
        inv_summary s = {dt, n, k, impl, b->nmeas[impl], b->npat[impl]};
        b->inv[b->ninv++] = s;
    }
    free_shape(b);
    return 0;
}

static void print_invariance_summary(const bench *b) {
    printf("\nBatch invariance: row 0 of A is the same for every m; is row 0 of C bitwise "
           "the same for every m?\n");
    printf("%-15s %-5s %6s %6s %4s  %-9s %s\n", "impl", "dtype", "n", "k", "#m", "invariant",
           "distinct row-0 bit patterns");
    for (size_t i = 0; i < b->ninv; i++) {
        const inv_summary *s = &b->inv[i];
        printf("%-15s %-5s %6zu %6zu %4d  %-9s %d\n", impl_names[s->impl], dtype_name(s->dtype),
               s->n, s->k, s->nm, s->distinct == 1 ? "yes" : "NO", s->distinct);
    }
    int inv_broken = 0;
    for (size_t i = 0; i < b->ninv; i++)
        if (b->inv[i].impl == IMPL_INVARIANT && b->inv[i].distinct != 1) inv_broken = 1;
    if (inv_broken)
        printf("WARNING: binv-invariant produced different row-0 bits at different m: the "
               "library's batch-invariance contract is broken on this device.\n");
}

/* ------------------------------------------------------------------------ */
/* Plots                                                                    */

static int write_plots(const bench *b) {
    const char *dir = b->opt.plot_dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return fail("cannot create plot directory '%s': %s", dir, strerror(errno));
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen), *png = malloc(plen), *cmd = malloc(4 * plen + 256);
    int rc = 0;
    if (!path || !png || !cmd) {
        rc = fail("out of host memory");
        goto done;
    }
    snprintf(path, plen, "%s/plot.gp", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(binv_bench_plot_gp, f) < 0) {
        if (f) fclose(f);
        rc = fail("cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    if (fclose(f) != 0) {
        rc = fail("cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    /* One data file and one PNG per (dtype, n, k), in the order measured. */
    for (size_t i = 0; i < b->nres; i++) {
        const result *r0 = &b->res[i];
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = b->res[j].dtype == r0->dtype && b->res[j].n == r0->n && b->res[j].k == r0->k;
        if (seen) continue;
        /* Columns: implementations with at least one measurement here (a
         * column of "n/a" only would make gnuplot complain). */
        int impls[IMPL_COUNT], nimpl = 0;
        for (int impl = 0; impl < IMPL_COUNT; impl++) {
            int any = 0;
            for (size_t j = i; j < b->nres && !any; j++)
                any = b->res[j].dtype == r0->dtype && b->res[j].n == r0->n &&
                      b->res[j].k == r0->k && b->res[j].impl == impl && b->res[j].available;
            if (any) impls[nimpl++] = impl;
        }
        if (nimpl == 0) continue;
        snprintf(path, plen, "%s/gemm-%s-%zux%zu.dat", dir, dtype_name(r0->dtype), r0->n, r0->k);
        snprintf(png, plen, "%s/gemm-%s-%zux%zu.png", dir, dtype_name(r0->dtype), r0->n, r0->k);
        f = fopen(path, "w");
        if (!f) {
            rc = fail("cannot write %s: %s", path, strerror(errno));
            goto done;
        }
        fprintf(f, "m");
        for (int q = 0; q < nimpl; q++) fprintf(f, " %s", impl_names[impls[q]]);
        fprintf(f, "\n");
        for (int mi = 0; mi < b->opt.nm; mi++) {
            size_t m = b->opt.ms[mi];
            fprintf(f, "%zu", m);
            for (int q = 0; q < nimpl; q++) {
                const result *hit = NULL;
                for (size_t j = i; j < b->nres; j++) {
                    const result *r = &b->res[j];
                    if (r->dtype == r0->dtype && r->n == r0->n && r->k == r0->k && r->m == m &&
                        r->impl == impls[q])
                        hit = r;
                }
                if (hit && hit->available) fprintf(f, " %.3f", hit->gflops);
                else fprintf(f, " ?");
            }
            fprintf(f, "\n");
        }
        if (fclose(f) != 0) {
            rc = fail("cannot write %s: %s", path, strerror(errno));
            goto done;
        }
        /* Device names may hold any character: keep them out of the shell. */
        snprintf(cmd, 4 * plen + 256,
                 "gnuplot -e \"datafile='%s'; outfile='%s'; plottitle='binv-bench %s GEMM n=%zu "
                 "k=%zu (A[m,k] x W[n,k]^T), copy bw %.0f GB/s'; ncol=%d\" '%s/plot.gp'",
                 path, png, dtype_name(r0->dtype), r0->n, r0->k, b->copy_gbs, nimpl + 1, dir);
        fflush(stdout);
        int st = system(cmd);
        if (st != 0) {
            rc = fail("gnuplot failed (status %d) for %s; is gnuplot installed?  The data file "
                      "is written: rerun %s/plot.gp by hand", st, path, dir);
            goto done;
        }
        printf("plot: %s\n", png);
    }
done:
    free(path);
    free(png);
    free(cmd);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int setup_device(bench *b) {
    cl_int err;
    if (pick_device(b)) return 1;
    CL_TRY(clGetDeviceInfo(b->device, CL_DEVICE_NAME, sizeof b->device_name, b->device_name, NULL),
           "clGetDeviceInfo(CL_DEVICE_NAME)");
    CL_TRY(clGetPlatformInfo(b->platform, CL_PLATFORM_NAME, sizeof b->platform_name,
                             b->platform_name, NULL),
           "clGetPlatformInfo(CL_PLATFORM_NAME)");
    CL_TRY(clGetDeviceInfo(b->device, CL_DEVICE_TYPE, sizeof b->type, &b->type, NULL),
           "clGetDeviceInfo(CL_DEVICE_TYPE)");
    CL_TRY(clGetDeviceInfo(b->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof b->compute_units,
                           &b->compute_units, NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)");
    CL_TRY(clGetDeviceInfo(b->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof b->global_mem,
                           &b->global_mem, NULL),
           "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)");
    CL_TRY(clGetDeviceInfo(b->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof b->max_alloc,
                           &b->max_alloc, NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)");
    b->is_gpu = (b->type & CL_DEVICE_TYPE_GPU) != 0;
    b->has_fp16 = device_has_ext(b->device, "cl_khr_fp16");
    b->reps = b->opt.reps ? b->opt.reps : (b->is_gpu ? 20 : 3);

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)b->platform, 0};
    b->context = clCreateContext(props, 1, &b->device, NULL, NULL, &err);
    CL_TRY(err, "clCreateContext");
    b->queue = clCreateCommandQueue(b->context, b->device, 0, &err);
    CL_TRY(err, "clCreateCommandQueue");

    for (int s = 0; s < 2; s++) {
        if (!(s == 0 ? b->opt.run_invariant : b->opt.run_adaptive)) continue;
        binv_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.schedule = s == 0 ? BINV_SCHEDULE_INVARIANT : BINV_SCHEDULE_ADAPTIVE;
        binv_status st = binv_context_create(b->context, b->device, s == 0 ? NULL : &o,
                                             &b->binv[s]);
        if (st != BINV_SUCCESS)
            /* No context exists to ask binv_context_last_error(): the
             * library logs the detailed reason to stderr with BINV_DEBUG. */
            return fail("binv_context_create(%s) on '%s' failed: %s (%d); rerun with "
                        "BINV_DEBUG=1 for the library's detailed message",
                        s == 0 ? "invariant" : "adaptive", b->device_name,
                        binv_status_string(st), st);
    }

    printf("binv-bench %s: device '%s' (%s, platform '%s'), %u compute units, %.1f GiB, "
           "cl_khr_fp16 %s\n",
           binv_version_string(), b->device_name, type_name(b->type), b->platform_name,
           b->compute_units, (double)b->global_mem / (1024.0 * 1024.0 * 1024.0),
           b->has_fp16 ? "yes" : "no");
#ifdef BINV_HAVE_CLBLAST
    printf("CLBlast: compiled in (SGEMM; HGEMM only with cl_khr_fp16; no bf16)\n");
#else
    printf("CLBlast: not compiled in (no clblast column)\n");
#endif
    const char *env[] = {"BINV_GEMM_PATH", "BINV_GEMM_TILE", "BINV_DEBUG"};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        const char *v = getenv(env[i]);
        if (v && *v) printf("note: %s=%s is set\n", env[i], v);
    }
    printf("timing: median of %d reps of a batch of calls; layout A[m,k] x W[n,k]^T = C[m,n], "
           "alpha=1, beta=0\n", b->reps);
#ifdef BINV_HAVE_CLBLAST
    const char *vs_note = " vs-clbl = CLBlast time / this time;";
#else
    const char *vs_note = "";
#endif
    printf("columns: calls = calls timed; GB/s = operand bytes / time; %%BW = that / copy "
           "bandwidth;%s err = max |C - ref| / sum|a*w| over rows 0 and m-1\n", vs_note);
    return 0;
}

static void teardown(bench *b) {
    free_shape(b);
#ifdef BINV_HAVE_CLBLAST
    /* CLBlast caches programs built for this context: drop them first. */
    CLBlastClearCache();
#endif
    for (int s = 0; s < 2; s++) binv_context_destroy(b->binv[s]);
    if (b->queue) clReleaseCommandQueue(b->queue);
    if (b->context) clReleaseContext(b->context);
    if (b->csv) fclose(b->csv);
    free(b->res);
    free(b->inv);
}

int main(int argc, char **argv) {
    bench b;
    memset(&b, 0, sizeof b);
    int prc = parse_args(argc, argv, &b.opt);
    if (prc == 2) return 0;
    if (prc) {
        fprintf(stderr, "binv-bench: see --help\n");
        return 1;
    }
    if (b.opt.list) return list_devices() ? 1 : 0;

    int rc = setup_device(&b);
    if (!rc) {
        b.csv = fopen(b.opt.csv, "w");
        if (!b.csv) rc = fail("cannot open %s for writing: %s", b.opt.csv, strerror(errno));
        else
            fprintf(b.csv, "device,dtype,impl,m,n,k,status,reps,calls_per_rep,weight_copies,ms,"
                           "gflops,operand_gbs,copy_gbs,frac_copy_bw,vs_clblast,err_row0,"
                           "err_row_last,check,row0_fnv1a64\n");
    }
    /* The plot directory is made now so that a bad name fails before the run. */
    if (!rc && b.opt.plot_dir && mkdir(b.opt.plot_dir, 0777) != 0 && errno != EEXIST)
        rc = fail("cannot create plot directory '%s': %s", b.opt.plot_dir, strerror(errno));
    if (!rc) rc = measure_copy_bandwidth(&b);
    for (int d = 0; !rc && d < b.opt.ndtypes; d++)
        for (int s = 0; !rc && s < b.opt.nnk; s++)
            rc = run_shape(&b, b.opt.dtypes[d], b.opt.ns[s], b.opt.ks[s]);
    if (!rc) print_invariance_summary(&b);
    if (!rc && b.csv) {
        int bad = ferror(b.csv);
        bad |= fclose(b.csv) != 0;
        b.csv = NULL;
        if (bad) rc = fail("writing %s failed", b.opt.csv);
        else printf("\nCSV: %s\n", b.opt.csv);
    }
    if (!rc && b.opt.plot_dir) rc = write_plots(&b);
    if (!rc && b.any_bad)
        rc = fail("some results are wrong (check = BAD above: error relative to the term "
                  "magnitudes beyond the tolerance)");
    teardown(&b);
    return rc ? 1 : 0;
}
