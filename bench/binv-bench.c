/* binv-bench — throughput of libbinv-cl, with a batch-invariance check.
 *
 * GEMM (--op gemm, the default), next to CLBlast, in the LLM layout:
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
 * Row reductions (--op rows): rmsnorm, softmax, log_softmax, layernorm,
 * add_rmsnorm, row_sum, row_mean for every (dtype, cols, op, rows, schedule):
 * time per call, bytes moved, GB/s, fraction of the copy bandwidth, the
 * adaptive/invariant time ratio, an accuracy check of rows 0 and rows-1
 * against a double-precision reference, and whether row 0 of the output kept
 * its bits over every row count (row 0 of x is the same in every batch).
 *
 * Attention (--op attention): decode steps (batch x context, one new token
 * per sequence) and a one-sequence prefill over the paged KV cache, 32 query
 * heads / 8 KV heads / head_dim 128: time per binv_attention call, KV bytes
 * read per second as a fraction of the copy bandwidth (decode), TFLOP/s
 * (prefill: 4 * heads * head_dim * P(P+1)/2), adaptive vs invariant.
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
#include "harness.h"
#ifdef BINV_HAVE_CLBLAST
#include <clblast_c.h>
#endif
#include "binv_bench_plot_gp.h"

#define MAX_LIST 64

/* ------------------------------------------------------------------------ */
/* What is measured                                                         */

enum { IMPL_CLBLAST = 0, IMPL_INVARIANT = 1, IMPL_ADAPTIVE = 2, IMPL_NATIVE = 3, IMPL_COUNT = 4 };
static const char *const impl_names[IMPL_COUNT] = {"clblast", "binv-invariant", "binv-adaptive",
                                                   "binv-native"};

/* binv schedules, index into bench.binv[]. */
enum { SCHED_INVARIANT = 0, SCHED_ADAPTIVE = 1, SCHED_NATIVE = 2 /* invariant, native path */ };
static const char *const sched_names[2] = {"invariant", "adaptive"};

enum { RUN_GEMM = 1, RUN_ROWS = 2, RUN_ATTN = 4 };

/* Row reductions.  Traffic per call, the convention of the GB/s column:
 * `reads` + `writes` matrices of rows x cols elements (x read once, y written
 * once; add_rmsnorm reads x and the residual and writes x and y), `vectors`
 * parameter vectors of cols elements read once, and row_sum / row_mean write
 * one f32 per row.  `buffers`: the distinct rows x cols buffers a call needs
 * (for the device-memory limit). */
enum {
    ROP_RMSNORM, ROP_SOFTMAX, ROP_LOG_SOFTMAX, ROP_LAYERNORM, ROP_ADD_RMSNORM, ROP_ROW_SUM,
    ROP_ROW_MEAN, ROP_COUNT
};
static const struct rop_info {
    const char *name;
    int reads, writes, buffers, vectors;
} rops[ROP_COUNT] = {
    {"rmsnorm", 1, 1, 2, 1},     {"softmax", 1, 1, 2, 0}, {"log_softmax", 1, 1, 2, 0},
    {"layernorm", 1, 1, 2, 2},   {"add_rmsnorm", 2, 2, 3, 1}, {"row_sum", 1, 0, 1, 0},
    {"row_mean", 1, 0, 1, 0},
};
static int rop_f32_out(int op) { return op == ROP_ROW_SUM || op == ROP_ROW_MEAN; }
#define ROWS_EPS 1e-5f

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

typedef struct size_list {
    size_t v[MAX_LIST];
    int n;
} size_list;

typedef struct options {
    const char *device;   /* NULL: BINV_DEVICE, else first GPU, else first device */
    int list;
    int quick;
    int run;              /* RUN_GEMM | RUN_ROWS */
    const char *csv, *rows_csv;
    binv_dtype dtypes[3];
    int ndtypes;
    int reps;             /* 0: 20 on a GPU, 3 otherwise */
    size_list ms;
    size_t ns[MAX_LIST], ks[MAX_LIST];
    int nnk;
    int rops[ROP_COUNT], nrops;
    size_list rows, cols;
    int run_invariant, run_adaptive;
    const char *plot_dir;
    int wcopies;          /* 0: automatic */
    const char *attn_csv;
    size_list attn_batch, attn_ctx;
    size_t attn_prefill;
} options;

static void usage(FILE *f) {
    fprintf(f,
        "usage: binv-bench [options]\n"
        "  --device gpu|cpu|P:D   device: first GPU / first CPU of any platform, or platform P,\n"
        "                         device D as numbered by --list (default: $BINV_DEVICE, else\n"
        "                         the first GPU, else the first device)\n"
        "  --list                 list platforms and devices, then exit\n"
        "  --op gemm|rows|attention|all   what to measure (default gemm)\n"
        "  --quick                small CPU smoke run: gemm m in {1,4,64}, (n,k) in {512x512,\n"
        "                         72x1000}; rows in {1,64}, cols in {4096,14336}\n"
        "  --dtype f32|f16|bf16|all   storage dtype(s) (default f32)\n"
        "  --reps N               timed repetitions per configuration, median reported\n"
        "                         (default 20 on a GPU, 3 otherwise)\n"
        "  --schedule invariant|adaptive|both   binv schedules to run (default both)\n"
        " gemm:\n"
        "  --csv FILE             CSV output (default binv-bench-gemm.csv)\n"
        "  --m LIST               comma-separated m values\n"
        "                         (default 1,2,4,8,16,32,64,128,512,2048,4096)\n"
        "  --nk LIST              comma-separated NxK pairs (W is N x K)\n"
        "                         (default 4096x4096,4096x14336,14336x4096)\n"
        "  --weight-copies N      weight buffers to rotate through (default: enough for\n"
        "                         > 200 MB on a GPU so that W never sits in L2; 1 on a CPU\n"
        "                         or with --quick)\n"
        "  --plot DIR             write GFLOP/s-vs-m data files and PNGs (gnuplot) into DIR\n"
        " rows:\n"
        "  --rows-csv FILE        CSV output (default binv-bench-rows.csv)\n"
        "  --rows-ops LIST        comma-separated among rmsnorm, softmax, log_softmax,\n"
        "                         layernorm, add_rmsnorm, row_sum, row_mean, or all\n"
        "                         (default rmsnorm,softmax,log_softmax)\n"
        "  --rows LIST            row counts (default 1,8,64,512,4096,16384)\n"
        "  --cols LIST            row lengths (default 4096,14336,152064); a shape whose\n"
        "                         buffers exceed 25%% of the device memory is skipped.  On a\n"
        "                         GPU the inputs and outputs rotate through >= 128 MB each so\n"
        "                         that small shapes are timed from DRAM, not from L2\n"
        " attention (32 heads, 8 KV heads, head_dim 128):\n"
        "  --attn-csv FILE        CSV output (default binv-bench-attention.csv)\n"
        "  --attn-batch LIST      decode batch sizes (default 1,8,64; --quick 1,4)\n"
        "  --attn-ctx LIST        decode context lengths (default 512,4096,32768;\n"
        "                         --quick 300,1000); shapes over the memory limit are skipped\n"
        "  --attn-prefill N       prefill length (default 4096; --quick 256; 0: none)\n"
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

static int parse_size_list(const char *s, size_list *l) {
    l->n = 0;
    while (*s) {
        size_t v;
        int len = parse_size(s, &v);
        if (!len || l->n >= MAX_LIST) return 0;
        l->v[l->n++] = v;
        s += len;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return l->n > 0;
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

static int parse_rops(const char *s, options *o) {
    o->nrops = 0;
    if (!strcmp(s, "all")) {
        for (int i = 0; i < ROP_COUNT; i++) o->rops[o->nrops++] = i;
        return 1;
    }
    while (*s) {
        size_t len = strcspn(s, ",");
        int hit = -1;
        for (int i = 0; i < ROP_COUNT; i++)
            if (strlen(rops[i].name) == len && !strncmp(s, rops[i].name, len)) hit = i;
        if (hit < 0) return 0;
        for (int i = 0; i < o->nrops; i++)
            if (o->rops[i] == hit) return 0;
        o->rops[o->nrops++] = hit;
        s += len;
        if (*s == ',') s++;
    }
    return o->nrops > 0;
}

static void set_list(size_list *l, const size_t *v, int n) {
    memcpy(l->v, v, (size_t)n * sizeof *v);
    l->n = n;
}

/* A --m / --rows / --cols value, or the quick or the default list. */
static int size_list_option(const char *name, const char *val, size_list *l, int quick,
                            const size_t *quick_v, int nquick, const size_t *def_v, int ndef) {
    if (!val) {
        if (quick) set_list(l, quick_v, nquick);
        else set_list(l, def_v, ndef);
        return 0;
    }
    if (parse_size_list(val, l)) return 0;
    fprintf(stderr, "binv-bench: %s needs a comma-separated list of at most %d integers in "
                    "1..2^31-1, not '%s'\n", name, MAX_LIST, val);
    return 1;
}

/* Returns 0 to go on, 1 on a usage error, 2 after --help. */
static int parse_args(int argc, char **argv, options *o) {
    static const size_t def_m[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 4096};
    static const size_t def_n[] = {4096, 4096, 14336}, def_k[] = {4096, 14336, 4096};
    static const size_t quick_m[] = {1, 4, 64};
    /* 72x1000: K is two chunks of the invariant schedule (the second partial),
     * and the few output tiles make the library split K on a small CPU. */
    static const size_t quick_n[] = {512, 72}, quick_k[] = {512, 1000};
    static const size_t def_rows[] = {1, 8, 64, 512, 4096, 16384}, quick_rows[] = {1, 64};
    static const size_t def_cols[] = {4096, 14336, 152064}, quick_cols[] = {4096, 14336};
    static const size_t def_ab[] = {1, 8, 64}, quick_ab[] = {1, 4};
    static const size_t def_ac[] = {512, 4096, 32768}, quick_ac[] = {300, 1000};
    const char *m_list = NULL, *nk_list = NULL, *rows_list = NULL, *cols_list = NULL;
    const char *ab_list = NULL, *ac_list = NULL, *prefill = NULL;
    memset(o, 0, sizeof *o);
    o->csv = "binv-bench-gemm.csv";
    o->rows_csv = "binv-bench-rows.csv";
    o->attn_csv = "binv-bench-attention.csv";
    o->run = RUN_GEMM;
    o->dtypes[0] = BINV_DTYPE_F32;
    o->ndtypes = 1;
    o->run_invariant = o->run_adaptive = 1;
    o->rops[0] = ROP_RMSNORM;
    o->rops[1] = ROP_SOFTMAX;
    o->rops[2] = ROP_LOG_SOFTMAX;
    o->nrops = 3;
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
                                            "--nk", "--schedule", "--plot", "--op", "--rows-csv",
                                            "--rows-ops", "--rows", "--cols", "--attn-csv",
                                            "--attn-batch", "--attn-ctx", "--attn-prefill"};
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
        } else if (!strcmp(name, "--csv") || !strcmp(name, "--rows-csv") ||
                   !strcmp(name, "--attn-csv")) {
            if (!*val) { fprintf(stderr, "binv-bench: %s needs a file name\n", name); return 1; }
            if (!strcmp(name, "--csv")) o->csv = val;
            else if (!strcmp(name, "--rows-csv")) o->rows_csv = val;
            else o->attn_csv = val;
        } else if (!strcmp(name, "--attn-batch")) {
            ab_list = val;
        } else if (!strcmp(name, "--attn-ctx")) {
            ac_list = val;
        } else if (!strcmp(name, "--attn-prefill")) {
            prefill = val;
        } else if (!strcmp(name, "--op")) {
            if (!strcmp(val, "gemm")) o->run = RUN_GEMM;
            else if (!strcmp(val, "rows")) o->run = RUN_ROWS;
            else if (!strcmp(val, "attention")) o->run = RUN_ATTN;
            else if (!strcmp(val, "all")) o->run = RUN_GEMM | RUN_ROWS | RUN_ATTN;
            else {
                fprintf(stderr, "binv-bench: --op must be gemm, rows, attention or all, not "
                                "'%s'\n", val);
                return 1;
            }
        } else if (!strcmp(name, "--rows-ops")) {
            if (!parse_rops(val, o)) {
                fprintf(stderr, "binv-bench: --rows-ops needs a comma-separated list of distinct "
                                "names among rmsnorm, softmax, log_softmax, layernorm, "
                                "add_rmsnorm, row_sum, row_mean (or all), not '%s'\n", val);
                return 1;
            }
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
        } else if (!strcmp(name, "--rows")) {
            rows_list = val;
        } else if (!strcmp(name, "--cols")) {
            cols_list = val;
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
    /* Size lists: an explicit list wins over --quick, which wins over the default. */
    if (size_list_option("--m", m_list, &o->ms, o->quick, quick_m, 3, def_m, 11) ||
        size_list_option("--rows", rows_list, &o->rows, o->quick, quick_rows, 2, def_rows, 6) ||
        size_list_option("--cols", cols_list, &o->cols, o->quick, quick_cols, 2, def_cols, 3) ||
        size_list_option("--attn-batch", ab_list, &o->attn_batch, o->quick, quick_ab, 2, def_ab,
                         3) ||
        size_list_option("--attn-ctx", ac_list, &o->attn_ctx, o->quick, quick_ac, 2, def_ac, 3))
        return 1;
    o->attn_prefill = o->quick ? 256 : 4096;
    if (prefill && !strcmp(prefill, "0")) o->attn_prefill = 0;
    else if (prefill && (parse_size(prefill, &o->attn_prefill) != (int)strlen(prefill) ||
                         o->attn_prefill > (1u << 20))) {
        fprintf(stderr, "binv-bench: --attn-prefill needs an integer in 0..1048576\n");
        return 1;
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

/* Appends elem (of size sz) to the growable array *arr of *n used, *cap slots. */
static int push(void **arr, size_t *n, size_t *cap, const void *elem, size_t sz) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void *p = realloc(*arr, c * sz);
        if (!p) return fail("out of host memory");
        *arr = p;
        *cap = c;
    }
    memcpy((unsigned char *)*arr + *n * sz, elem, sz);
    (*n)++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Host data                                                                */


/* Fills `count` storage words of dtype (into store) and, if vals is not
 * NULL, their exact f32 values.  Values are uniform in (-1, 1) with a full
 * mantissa: never 0 and never a power of two (the lowest mantissa bit is
 * forced on when the rounded value would have an all-zero mantissa), so sums
 * round and any change of reduction order shows in the bits. */
static void fill_data(binv_dtype dt, unsigned char *store, float *vals, size_t count,
                      uint64_t *seed) {
    const size_t esz = hx_dtype_size(dt);
    const uint32_t mant = dt == BINV_DTYPE_F32 ? 0x7fffffu : dt == BINV_DTYPE_F16 ? 0x3ffu : 0x7fu;
    for (size_t i = 0; i < count; i++) {
        int32_t r = (int32_t)(hx_rng_next(seed) >> 40) - (1 << 23); /* [-2^23, 2^23) */
        hx_store(dt, store, i, r ? (float)r * 0x1p-23f : 0.3671875f);
        /* The low mantissa bit is the lowest bit of the storage word. */
        if (esz == 4) {
            uint32_t u;
            memcpy(&u, store + 4 * i, 4);
            if ((u & mant) == 0) u |= 1u;
            memcpy(store + 4 * i, &u, 4);
        } else {
            uint16_t h;
            memcpy(&h, store + 2 * i, 2);
            if ((h & mant) == 0) h |= 1u;
            memcpy(store + 2 * i, &h, 2);
        }
        if (vals) vals[i] = hx_load(dt, store, i);
    }
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

/* Whether row 0 of the output kept its bits over the batch sizes measured:
 * GEMM: (dtype, n, k, impl) over m; rows: (dtype, op, cols, schedule) over
 * rows. */
typedef struct inv_summary {
    binv_dtype dtype;
    size_t n, k;           /* rows: n = cols, k unused */
    int impl;              /* rows: schedule */
    int op;                /* rows only */
    int nm;                /* batch sizes measured */
    int distinct;          /* distinct row-0 bit patterns among them */
} inv_summary;

typedef struct rows_result {
    binv_dtype dtype;
    int op, sched;
    size_t rows, cols;
    double us;             /* per call */
} rows_result;

typedef struct bench {
    options opt;
    hx_device dev;
    cl_command_queue queue; /* without profiling: timing is wall clock */
    binv_context *binv[3];  /* [SCHED_INVARIANT], [SCHED_ADAPTIVE], [SCHED_NATIVE] */
    int is_gpu, has_fp16;
    cl_uint compute_units;
    cl_ulong global_mem, max_alloc;
    int reps;
    double copy_gbs;
    double launch_us, launch_host_us; /* one tiny kernel, back to back */
    unsigned long rot;      /* call counter: which copy of the inputs is next */
    int any_bad;

    /* GEMM, per (dtype, n, k). */
    FILE *csv;
    cl_mem a, c;
    cl_mem *w;
    int nw;
    float *fa, *fw;        /* exact f32 values of A (max m rows) and W */
    double *ref0, *reflast;/* reference rows 0 and m-1 of C */
    double *mag0, *maglast;/* and their term magnitudes */
    unsigned char *crow;   /* one row of C read back */
    hx_hashset pat[IMPL_COUNT]; /* distinct row-0 patterns */
    int nmeas[IMPL_COUNT];
    result *res;
    size_t nres, capres;
    inv_summary *inv;
    size_t ninv, capinv;

    /* Rows, per (dtype, cols): pools of row-major matrices (x, the residual,
     * y, f32 outputs) and of parameter vectors; a call on `rows` rows uses
     * slot s = rows [s*rows, (s+1)*rows) of the pools. */
    FILE *rows_csv;
    cl_mem px, pr, py, pout, pw, pb;
    size_t pool_rows, rpool_rows, vslots;
    unsigned char *hx, *hr, *hw, *hb; /* host data: hrows rows of x and r, one vector each */
    size_t hrows;
    double *rv, *rref;     /* a row's values and its reference output */
    unsigned char *yrow;   /* one output row read back */
    hx_hashset rpat[2];
    int rmeas[2];
    rows_result *rres;
    size_t nrres, caprres;
    inv_summary *rinv;
    size_t nrinv, caprinv;
} bench;

/* ------------------------------------------------------------------------ */
/* Timing                                                                   */


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One call of the configuration `cfg` on copy `slot` of its inputs (the
 * callee reduces slot modulo its number of copies). */
typedef int (*bench_call)(bench *b, const void *cfg, unsigned long slot);

/* Times one configuration.  Wall clock around a batch of back-to-back calls
 * closed by one clFinish, divided by the batch size; median over reps.
 * Not profiling events: binv_gemm may enqueue two kernels (split-K partials,
 * then the ordered reduction), the row reductions up to three, and each
 * returns an event for the last only; CLBlast may add transpose/pad kernels;
 * so events would miss work.  The batch amortises the clFinish round trip the
 * way a pipelined inference loop does; host-side cost per call (argument
 * checks, launches) is included, as it is for a real caller.  Calls rotate
 * through the copies of the inputs.  host_ms (if not NULL) receives the
 * median time the host spent issuing a call (the batch before its clFinish):
 * when it is close to *ms, the host, not the device, sets the pace. */
static int time_calls(bench *b, bench_call call, const void *cfg, double *ms, int *inner_out,
                      double *host_ms) {
    /* Warm-up: the first calls build programs (binv's lazily, CLBlast's per
     * kernel variant) and wake the device up; >= 3 calls and >= 50 ms (at
     * most 100 calls), none timed. */
    double w0 = hx_now_s();
    for (int i = 0; i < 100; i++) {
        if (call(b, cfg, b->rot++)) return 1;
        CL_TRY(clFinish(b->queue), "clFinish");
        if (i >= 2 && hx_now_s() - w0 >= 0.050) break;
    }
    /* Calibrate: batches of >= ~2 ms on a GPU (>= ~20 ms on a CPU, whose
     * thread wake-ups are noisier), at most 200 calls. */
    double t0 = hx_now_s();
    if (call(b, cfg, b->rot++)) return 1;
    CL_TRY(clFinish(b->queue), "clFinish");
    double one = hx_now_s() - t0, target = b->is_gpu ? 0.002 : 0.020;
    int inner = one > 0 && one < target ? (int)ceil(target / one) : 1;
    if (inner > 200) inner = 200;
    double *times = calloc(2 * (size_t)b->reps, sizeof *times), *host = times + b->reps;
    if (!times) return fail("out of host memory");
    for (int r = 0; r < b->reps; r++) {
        t0 = hx_now_s();
        for (int i = 0; i < inner; i++)
            if (call(b, cfg, b->rot++)) {
                free(times);
                return 1;
            }
        host[r] = (hx_now_s() - t0) / inner;
        cl_int err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
            free(times);
            return fail("clFinish failed: OpenCL error %d", (int)err);
        }
        times[r] = (hx_now_s() - t0) / inner;
    }
    *ms = 1e3 * median(times, b->reps);
    if (host_ms) *host_ms = 1e3 * median(host, b->reps);
    *inner_out = inner;
    free(times);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Device                                                                   */

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

static int create_buffer(bench *b, size_t bytes, const void *init, cl_mem *out, const char *what) {
    cl_int err;
    if ((cl_ulong)bytes > b->max_alloc)
        return fail("%s needs %zu bytes, more than CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu): use "
                    "smaller sizes", what, bytes, (unsigned long long)b->max_alloc);
    *out = clCreateBuffer(b->dev.context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return fail("clCreateBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    if (init) {
        err = clEnqueueWriteBuffer(b->queue, *out, CL_TRUE, 0, bytes, init, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return fail("clEnqueueWriteBuffer(%s, %zu bytes) failed: %d", what, bytes, (int)err);
    }
    return 0;
}

static void release_mem(cl_mem *m) {
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
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

/* One launch of the copy kernel on a single work-group of 32 (the yardstick
 * for the per-call floor of small shapes). */
static int tiny_launch(bench *b, const void *cfg, unsigned long slot) {
    const size_t gws = 32;
    (void)slot;
    CL_TRY(clEnqueueNDRangeKernel(b->queue, *(const cl_kernel *)cfg, 1, NULL, &gws, NULL, 0, NULL,
                                  NULL),
           "clEnqueueNDRangeKernel(copy)");
    return 0;
}

/* Copy bandwidth = (bytes read + bytes written) / time, the same convention
 * as the GEMM operand bandwidth and the rows' bytes moved.  A 512 MiB buffer
 * on a GPU (1 GiB of traffic per copy, far beyond any L2), 128 MiB on a CPU
 * or with --quick; median of several repetitions of a timed batch of copies. */
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

    prog = clCreateProgramWithSource(b->dev.context, 1, srcs, NULL, &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateProgramWithSource(copy) failed: %d", (int)err);
        goto done;
    }
    err = clBuildProgram(prog, 1, &b->dev.device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(prog, b->dev.device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              NULL);
        rc = fail("building the copy kernel failed: %d\n%s", (int)err, log);
        goto done;
    }
    kern = clCreateKernel(prog, "binv_bench_copy", &err);
    if (err != CL_SUCCESS) {
        rc = fail("clCreateKernel(copy) failed: %d", (int)err);
        goto done;
    }
    if ((rc = create_buffer(b, bytes, NULL, &src, "copy source")) ||
        (rc = create_buffer(b, bytes, NULL, &dst, "copy destination")))
        goto done;
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
    double t0 = hx_now_s();
    err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clFinish(b->queue);
    if (err != CL_SUCCESS) {
        rc = fail("copy kernel failed: OpenCL error %d", (int)err);
        goto done;
    }
    double t1 = hx_now_s();
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
        t0 = hx_now_s();
        for (int i = 0; i < inner && err == CL_SUCCESS; i++)
            err = clEnqueueNDRangeKernel(b->queue, kern, 1, NULL, &gws, NULL, 0, NULL, NULL);
        if (err == CL_SUCCESS) err = clFinish(b->queue);
        if (err != CL_SUCCESS) {
            rc = fail("copy kernel failed: OpenCL error %d", (int)err);
            goto done;
        }
        times[r] = (hx_now_s() - t0) / inner;
    }
    double t = median(times, reps);
    b->copy_gbs = 2.0 * (double)bytes / t * 1e-9;
    printf("copy bandwidth: %.1f GB/s  (float4 copy kernel, %zu MiB -> %zu MiB = %.2f GiB "
           "read+written per copy, median of %d x %d copies)\n",
           b->copy_gbs, bytes >> 20, bytes >> 20, 2.0 * (double)bytes / (1 << 30), reps, inner);
    double ms = 0, host_ms = 0;
    if ((rc = time_calls(b, tiny_launch, &kern, &ms, &inner, &host_ms))) goto done;
    b->launch_us = 1e3 * ms;
    b->launch_host_us = 1e3 * host_ms;
    printf("launch floor: %.2f us per launch of a one-work-group kernel issued back to back, "
           "timed like the calls below (host %.2f us to issue one)\n", b->launch_us,
           b->launch_host_us);
done:
    free(times);
    release_mem(&src);
    release_mem(&dst);
    if (kern) clReleaseKernel(kern);
    if (prog) clReleaseProgram(prog);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Output helpers                                                           */

static void csv_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int open_csv(FILE **f, const char *path, const char *header) {
    *f = fopen(path, "w");
    if (!*f) return fail("cannot open %s for writing: %s", path, strerror(errno));
    fputs(header, *f);
    return 0;
}

static int close_csv(FILE **f, const char *path) {
    int bad = ferror(*f);
    bad |= fclose(*f) != 0;
    *f = NULL;
    if (bad) return fail("writing %s failed", path);
    printf("\nCSV: %s\n", path);
    return 0;
}

/* Sets `bytes` bytes at byte offset `off` of buf to 0xff (NaN in every
 * dtype) with the widest pattern that divides both: a 1-byte pattern makes
 * some drivers run one work-item per byte, and NVIDIA's fails
 * (CL_OUT_OF_RESOURCES) past 2^31 of them. */
static int fill_nan(bench *b, cl_mem buf, size_t off, size_t bytes) {
    static const unsigned char ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    size_t pat = 16;
    while ((off | bytes) % pat) pat /= 2;
    CL_TRY(clEnqueueFillBuffer(b->queue, buf, ones, pat, off, bytes, 0, NULL, NULL),
           "clEnqueueFillBuffer");
    return 0;
}

/* Reads `bytes` at byte offset `off` of buf into dst. */
static int read_back(bench *b, cl_mem buf, size_t off, size_t bytes, void *dst) {
    CL_TRY(clEnqueueReadBuffer(b->queue, buf, CL_TRUE, off, bytes, dst, 0, NULL, NULL),
           "clEnqueueReadBuffer");
    return 0;
}

/* Adds the hash of a row-0 read back to the distinct patterns. */
static void record_row0(hx_hashset *set, int *nmeas, const void *row, size_t bytes) {
    (*nmeas)++;
    hx_hashset_add(set, row, bytes);
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                     */

typedef struct gemm_cfg {
    int impl;
    binv_dtype dt;
    size_t m, n, k;
} gemm_cfg;

static int impl_selected(const bench *b, int impl) {
    switch (impl) {
#ifdef BINV_HAVE_CLBLAST
    case IMPL_CLBLAST: return 1;
#endif
    case IMPL_INVARIANT: return b->opt.run_invariant;
    case IMPL_ADAPTIVE: return b->opt.run_adaptive;
    case IMPL_NATIVE: return b->binv[SCHED_NATIVE] != NULL;
    }
    return 0;
}

/* Whether impl can run dtype on this device (an "n/a" cell otherwise). */
static int impl_supports(const bench *b, int impl, binv_dtype dt) {
    if (impl == IMPL_NATIVE) return dt != BINV_DTYPE_F32; /* tensor cores: bf16 / f16 */
    if (impl != IMPL_CLBLAST) return 1;
    if (dt == BINV_DTYPE_F32) return 1;
    if (dt == BINV_DTYPE_F16) return b->has_fp16; /* CLBlast HGEMM computes in half */
    return 0;                                    /* CLBlast has no bf16 */
}

static int gemm_call(bench *b, const void *cfg, unsigned long slot) {
    const gemm_cfg *g = cfg;
    size_t m = g->m, n = g->n, k = g->k;
    cl_mem w = b->w[slot % (unsigned long)b->nw];
    if (g->impl == IMPL_CLBLAST) {
#ifdef BINV_HAVE_CLBLAST
        CLBlastStatusCode s;
        if (g->dt == BINV_DTYPE_F32) {
            s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n,
                             k, 1.0f, b->a, 0, k, w, 0, k, 0.0f, b->c, 0, n, &b->queue, NULL);
        } else {
            const cl_half one = 0x3c00, zero = 0;
            s = CLBlastHgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n,
                             k, one, b->a, 0, k, w, 0, k, zero, b->c, 0, n, &b->queue, NULL);
        }
        if (s != CLBlastSuccess)
            return fail("CLBlast%cgemm(m=%zu n=%zu k=%zu) failed: CLBlast status %d",
                        g->dt == BINV_DTYPE_F32 ? 'S' : 'H', m, n, k, (int)s);
        return 0;
#else
        return fail("internal: CLBlast is not compiled in");
#endif
    }
    binv_context *ctx = b->binv[g->impl == IMPL_INVARIANT  ? SCHED_INVARIANT
                                : g->impl == IMPL_NATIVE ? SCHED_NATIVE
                                                         : SCHED_ADAPTIVE];
    binv_status st = binv_gemm(ctx, b->queue, g->dt, BINV_NO_TRANS, BINV_TRANS, m, n, k, 1.0f,
                               b->a, 0, k, w, 0, k, 0.0f, b->c, 0, n, 0, NULL, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv_gemm(%s, %s, m=%zu n=%zu k=%zu) failed: %s (%d): %s",
                    impl_names[g->impl], hx_dtype_name(g->dt), m, n, k,
                    binv_status_string(st), st, binv_context_last_error(ctx));
    return 0;
}

/* Max over j of |c_j - ref_j| / mag_j with mag_j = sum_p |a_p w_jp|: the
 * error relative to the size of the terms, meaningful whatever the
 * cancellation.  The row of C read back is in b->crow. */
static double row_error(const bench *b, binv_dtype dt, const double *ref, const double *mag,
                        size_t n) {
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double e = fabs((double)hx_load(dt, b->crow, j) - ref[j]);
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
    if (impl == IMPL_NATIVE) return 2e-2;
    if (dt == BINV_DTYPE_BF16) return 2e-2;
    return impl == IMPL_CLBLAST ? 5e-2 : 1e-2;
}

static int read_row(bench *b, binv_dtype dt, size_t row, size_t n) {
    size_t esz = hx_dtype_size(dt);
    return read_back(b, b->c, row * n * esz, n * esz, b->crow);
}

static void write_csv_row(bench *b, const result *r) {
    FILE *f = b->csv;
    csv_string(f, b->dev.name);
    fprintf(f, ",%s,%s,%zu,%zu,%zu,", hx_dtype_name(r->dtype), impl_names[r->impl], r->m, r->n,
            r->k);
    if (!r->available) {
        fprintf(f, "n/a,,,,,,,%.3f,,,,,,\n", b->copy_gbs);
        return;
    }
    fprintf(f, "ok,%d,%d,%d,%.6f,%.3f,%.3f,%.3f,%.4f,", r->reps, r->inner, r->wcopies, r->ms,
            r->gflops, r->gbs, b->copy_gbs, r->frac);
    if (r->vs_clblast >= 0) fprintf(f, "%.4f", r->vs_clblast);
    fprintf(f, ",%.3e,%.3e,%s,%016llx\n", r->err0, r->errlast,
            r->check_ok ? "ok" : r->impl == IMPL_CLBLAST ? "WRONG" : "BAD",
            (unsigned long long)r->row0_hash);
}

static void print_table_header(void) {
    printf("%-15s %-5s %5s %6s %6s %6s %10s %9s %8s %6s %8s %8s %5s\n", "impl", "dtype", "m", "n",
           "k", "calls", "ms", "GFLOP/s", "GB/s", "%BW", "vs-clbl", "err", "check");
}

static void print_row(const result *r) {
    printf("%-15s %-5s %5zu %6zu %6zu ", impl_names[r->impl], hx_dtype_name(r->dtype), r->m,
           r->n, r->k);
    if (!r->available) {
        printf("%6s %10s %9s %8s %6s %8s %8s %5s\n", "-", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a",
               "-");
    } else {
        char vs[16];
        if (r->vs_clblast >= 0) snprintf(vs, sizeof vs, "%.2fx", r->vs_clblast);
        else snprintf(vs, sizeof vs, "n/a");
        double err = r->err0 > r->errlast ? r->err0 : r->errlast;
        printf("%6d %10.4f %9.1f %8.1f %5.1f%% %8s %8.1e %5s\n", r->reps * r->inner, r->ms,
               r->gflops, r->gbs, 100.0 * r->frac, vs, err,
               r->check_ok ? "ok" : r->impl == IMPL_CLBLAST ? "WRONG" : "BAD");
    }
    fflush(stdout);
}

static void free_shape(bench *b) {
    release_mem(&b->a);
    release_mem(&b->c);
    for (int i = 0; i < b->nw; i++) release_mem(&b->w[i]);
    free(b->w);
    free(b->fa);
    free(b->fw);
    free(b->ref0);
    free(b->reflast);
    free(b->mag0);
    free(b->maglast);
    free(b->crow);
    for (int i = 0; i < IMPL_COUNT; i++) {
        hx_hashset_free(&b->pat[i]);
        b->nmeas[i] = 0;
    }
    b->w = NULL;
    b->nw = 0;
    b->fa = b->fw = NULL;
    b->ref0 = b->reflast = b->mag0 = b->maglast = NULL;
    b->crow = NULL;
}

/* Allocates and fills A (max m rows), the weight copies and C for (dtype, n, k). */
static int setup_shape(bench *b, binv_dtype dt, size_t n, size_t k, size_t max_m) {
    size_t esz = hx_dtype_size(dt);
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
    size_t max_m = 0, esz = hx_dtype_size(dt);
    for (int i = 0; i < b->opt.ms.n; i++)
        if (b->opt.ms.v[i] > max_m) max_m = b->opt.ms.v[i];
    printf("\n== %s  n=%zu k=%zu  (invariant K chunk %zu) ==\n", hx_dtype_name(dt), n, k,
           binv_gemm_chunk_size(dt, k));
    if (setup_shape(b, dt, n, k, max_m)) return 1;
    print_table_header();
    for (int mi = 0; mi < b->opt.ms.n; mi++) {
        size_t m = b->opt.ms.v[mi];
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
                const gemm_cfg cfg = {impl, dt, m, n, k};
                if (time_calls(b, gemm_call, &cfg, &r.ms, &r.inner, NULL)) return 1;
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
                r.row0_hash = hx_hash(b->crow, n * esz);
                record_row0(&b->pat[impl], &b->nmeas[impl], b->crow, n * esz);
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
                /* A wrong CLBlast is a broken baseline, not a failure of the
                 * library: its row says so and no speed-up is quoted against it. */
                if (!r.check_ok && impl == IMPL_CLBLAST) {
                    clblast_ms = -1;
                    r.vs_clblast = -1;
                    printf("note: CLBlast's result is wrong on this device (error %.1e): its row "
                           "is marked WRONG and is not a baseline\n",
                           r.err0 > r.errlast ? r.err0 : r.errlast);
                } else if (!r.check_ok) {
                    b->any_bad = 1;
                }
            }
            print_row(&r);
            write_csv_row(b, &r);
            if (push((void **)&b->res, &b->nres, &b->capres, &r, sizeof r)) return 1;
        }
    }
    /* Invariance of row 0 across m for this shape. */
    for (int impl = 0; impl < IMPL_COUNT; impl++) {
        if (!impl_selected(b, impl) || !b->nmeas[impl]) continue;
        inv_summary s = {dt, n, k, impl, 0, b->nmeas[impl], b->pat[impl].count};
        if (push((void **)&b->inv, &b->ninv, &b->capinv, &s, sizeof s)) return 1;
    }
    free_shape(b);
    return 0;
}

static void print_invariance_summary(const bench *b) {
    printf("\nBatch invariance: row 0 of A is the same for every m; is row 0 of C bitwise "
           "the same for every m?\n");
    printf("%-15s %-5s %6s %6s %4s  %-9s %s\n", "impl", "dtype", "n", "k", "#m", "invariant",
           "distinct row-0 bit patterns");
    int inv_broken = 0;
    for (size_t i = 0; i < b->ninv; i++) {
        const inv_summary *s = &b->inv[i];
        printf("%-15s %-5s %6zu %6zu %4d  %-9s %d\n", impl_names[s->impl],
               hx_dtype_name(s->dtype), s->n, s->k, s->nm, s->distinct == 1 ? "yes" : "NO",
               s->distinct);
        if (s->impl == IMPL_INVARIANT && s->distinct != 1) inv_broken = 1;
    }
    if (inv_broken)
        printf("WARNING: binv-invariant produced different row-0 bits at different m: the "
               "library's batch-invariance contract is broken on this device.\n");
}

/* ------------------------------------------------------------------------ */
/* Row reductions                                                           */

/* Rotation: on a GPU (not --quick) each pool holds >= this many bytes, so
 * that consecutive calls on small shapes touch >= 2 x this much of x and y
 * and read from DRAM, not from the L2 the previous call left them in. */
#define ROWS_ROTATE_BYTES ((size_t)128 << 20)
/* Rows of host data; the pools repeat them (row i holds host row i % this). */
#define ROWS_HOST_ROWS 64

typedef struct rows_cfg {
    int op, sched;
    binv_dtype dt;
    size_t rows, cols, slots;
} rows_cfg;

static size_t rows_row_bytes(binv_dtype dt, size_t cols) { return cols * hx_dtype_size(dt); }

/* Bytes a call moves (the convention of the header line). */
static double rows_traffic(int op, binv_dtype dt, size_t rows, size_t cols) {
    const struct rop_info *o = &rops[op];
    double esz = (double)hx_dtype_size(dt);
    return esz * ((double)(o->reads + o->writes) * (double)rows * (double)cols +
                  (double)o->vectors * (double)cols) +
           (rop_f32_out(op) ? 4.0 * (double)rows : 0.0);
}

/* Whether a shape fits: its buffers within 25% of the device memory, each
 * matrix within CL_DEVICE_MAX_MEM_ALLOC_SIZE. */
static int rows_fits(const bench *b, int op, binv_dtype dt, size_t rows, size_t cols) {
    const struct rop_info *o = &rops[op];
    double mat = (double)rows * (double)rows_row_bytes(dt, cols);
    double total = o->buffers * mat + o->vectors * (double)rows_row_bytes(dt, cols) +
                   (rop_f32_out(op) ? 4.0 * (double)rows : 0.0);
    return total <= 0.25 * (double)b->global_mem && mat <= (double)b->max_alloc;
}

static void free_rows_shape(bench *b) {
    cl_mem *bufs[] = {&b->px, &b->pr, &b->py, &b->pout, &b->pw, &b->pb};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) release_mem(bufs[i]);
    unsigned char **host[] = {&b->hx, &b->hr, &b->hw, &b->hb, &b->yrow};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) {
        free(*host[i]);
        *host[i] = NULL;
    }
    free(b->rv);
    free(b->rref);
    b->rv = b->rref = NULL;
    b->pool_rows = b->rpool_rows = b->vslots = b->hrows = 0;
}

/* Fills the first `rows` rows of a pool with the host rows repeated: writes
 * them once, then doubles the filled part with device copies. */
static int fill_pool(bench *b, cl_mem pool, const unsigned char *host, size_t host_rows,
                     size_t row_bytes, size_t rows) {
    size_t done = host_rows < rows ? host_rows : rows;
    CL_TRY(clEnqueueWriteBuffer(b->queue, pool, CL_TRUE, 0, done * row_bytes, host, 0, NULL, NULL),
           "clEnqueueWriteBuffer(rows pool)");
    while (done < rows) {
        size_t n = done < rows - done ? done : rows - done;
        CL_TRY(clEnqueueCopyBuffer(b->queue, pool, pool, 0, done * row_bytes, n * row_bytes, 0,
                                   NULL, NULL),
               "clEnqueueCopyBuffer(rows pool)");
        done += n;
    }
    CL_TRY(clFinish(b->queue), "clFinish");
    return 0;
}

/* Allocates and fills the pools for (dtype, cols).  Returns 0 also when no
 * shape fits (then pool_rows is 0). */
static int setup_rows_shape(bench *b, binv_dtype dt, size_t cols) {
    const size_t rb = rows_row_bytes(dt, cols);
    size_t fit = 0, rfit = 0;
    int need_r = 0, need_y = 0, need_out = 0, need_w = 0, need_b = 0;
    for (int i = 0; i < b->opt.nrops; i++) {
        int op = b->opt.rops[i];
        for (int j = 0; j < b->opt.rows.n; j++) {
            size_t r = b->opt.rows.v[j];
            if (!rows_fits(b, op, dt, r, cols)) continue;
            if (r > fit) fit = r;
            if (op == ROP_ADD_RMSNORM && r > rfit) rfit = r;
        }
        need_r |= op == ROP_ADD_RMSNORM;
        need_y |= !rop_f32_out(op);
        need_out |= rop_f32_out(op);
        need_w |= rops[op].vectors > 0;
        need_b |= op == ROP_LAYERNORM;
    }
    if (!fit) return 0;
    size_t rot = 1;
    if (b->is_gpu && !b->opt.quick) {
        rot = (ROWS_ROTATE_BYTES + rb - 1) / rb;
        /* Rotation may not push the pools past the limits either. */
        size_t cap = (size_t)(b->max_alloc / rb);
        size_t mem_cap = (size_t)(0.25 * (double)b->global_mem / (3.0 * (double)rb));
        if (cap > mem_cap) cap = mem_cap;
        if (rot > cap) rot = cap;
    }
    b->pool_rows = fit > rot ? fit : rot;
    b->rpool_rows = need_r ? (rfit > rot ? rfit : rot) : 0;
    b->vslots = rot < b->pool_rows ? rot : b->pool_rows;
    b->hrows = b->pool_rows < ROWS_HOST_ROWS ? b->pool_rows : ROWS_HOST_ROWS;

    b->hx = malloc(b->hrows * rb);
    b->hr = need_r ? malloc(b->hrows * rb) : NULL;
    b->hw = malloc(rb);
    b->hb = malloc(rb);
    b->yrow = malloc(rb > 4 ? rb : 4);
    b->rv = malloc(cols * sizeof(double));
    b->rref = malloc(cols * sizeof(double));
    if (!b->hx || (need_r && !b->hr) || !b->hw || !b->hb || !b->yrow || !b->rv || !b->rref)
        return fail("out of host memory (rows, cols=%zu)", cols);
    /* x: row 0 from its own seed (the same bits for every rows), rows 1..
     * from another; the residual, weight/gamma and beta from their own. */
    uint64_t seed = 0x5eed0010c0ULL ^ ((uint64_t)dt << 56);
    fill_data(dt, b->hx, NULL, cols, &seed);
    seed = 0x5eed0011c1ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    fill_data(dt, b->hx + rb, NULL, (b->hrows - 1) * cols, &seed);
    if (need_r) {
        seed = 0x5eed0012c2ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
        fill_data(dt, b->hr, NULL, b->hrows * cols, &seed);
    }
    seed = 0x5eed0013c3ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    fill_data(dt, b->hw, NULL, cols, &seed);
    seed = 0x5eed0014c4ULL ^ ((uint64_t)dt << 56) ^ ((uint64_t)cols << 20);
    fill_data(dt, b->hb, NULL, cols, &seed);

    if (create_buffer(b, b->pool_rows * rb, NULL, &b->px, "x pool") ||
        fill_pool(b, b->px, b->hx, b->hrows, rb, b->pool_rows))
        return 1;
    if (need_r && (create_buffer(b, b->rpool_rows * rb, NULL, &b->pr, "residual pool") ||
                   fill_pool(b, b->pr, b->hr, b->hrows, rb, b->rpool_rows)))
        return 1;
    if (need_w && (create_buffer(b, b->vslots * rb, NULL, &b->pw, "weight pool") ||
                   fill_pool(b, b->pw, b->hw, 1, rb, b->vslots)))
        return 1;
    if (need_b && (create_buffer(b, b->vslots * rb, NULL, &b->pb, "beta pool") ||
                   fill_pool(b, b->pb, b->hb, 1, rb, b->vslots)))
        return 1;
    /* Outputs: written once here so that no first touch is timed. */
    if (need_y && (create_buffer(b, b->pool_rows * rb, NULL, &b->py, "y pool") ||
                   fill_nan(b, b->py, 0, b->pool_rows * rb)))
        return 1;
    if (need_out && (create_buffer(b, b->pool_rows * 4, NULL, &b->pout, "out pool") ||
                     fill_nan(b, b->pout, 0, b->pool_rows * 4)))
        return 1;
    CL_TRY(clFinish(b->queue), "clFinish");
    printf("pools: %zu rows of x and y (%.1f MB each)%s, %zu cop%s of the vectors; the inputs "
           "of a call on r rows are copy s of floor(%zu/r), rotated\n",
           b->pool_rows, (double)(b->pool_rows * rb) * 1e-6,
           need_r ? ", residual likewise" : "", b->vslots, b->vslots == 1 ? "y" : "ies",
           b->pool_rows);
    return 0;
}

static int rows_call(bench *b, const void *cfg, unsigned long slot) {
    const rows_cfg *c = cfg;
    const size_t s = slot % c->slots, n = c->cols;
    const size_t mo = s * c->rows * n, vo = (s % b->vslots) * n;
    binv_context *ctx = b->binv[c->sched];
    binv_status st = BINV_SUCCESS;
    switch (c->op) {
    case ROP_RMSNORM:
        st = binv_rmsnorm(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->pw, vo, ROWS_EPS,
                          b->py, mo, n, 0, NULL, NULL);
        break;
    case ROP_ADD_RMSNORM:
        st = binv_add_rmsnorm(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->pr, mo, n, b->pw,
                              vo, ROWS_EPS, b->py, mo, n, 0, NULL, NULL);
        break;
    case ROP_LAYERNORM:
        st = binv_layernorm(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->pw, vo, b->pb, vo,
                            ROWS_EPS, b->py, mo, n, 0, NULL, NULL);
        break;
    case ROP_SOFTMAX:
        st = binv_softmax(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->py, mo, n, 0, NULL,
                          NULL);
        break;
    case ROP_LOG_SOFTMAX:
        st = binv_log_softmax(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->py, mo, n, 0,
                              NULL, NULL);
        break;
    case ROP_ROW_SUM:
        st = binv_row_sum(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->pout, s * c->rows, 0,
                          NULL, NULL);
        break;
    case ROP_ROW_MEAN:
        st = binv_row_mean(ctx, b->queue, c->dt, c->rows, n, b->px, mo, n, b->pout, s * c->rows,
                           0, NULL, NULL);
        break;
    }
    if (st != BINV_SUCCESS)
        return fail("binv %s(%s, %s, rows=%zu cols=%zu) failed: %s (%d): %s", rops[c->op].name,
                    sched_names[c->sched], hx_dtype_name(c->dt), c->rows, n,
                    binv_status_string(st), st, binv_context_last_error(ctx));
    return 0;
}

/* Reference output of pool row `row` in double (into b->rref; row_sum and
 * row_mean: rref[0]), and the scale the error is measured against: the
 * largest |output| (sum |v| for row_sum, its mean for row_mean). */
static double rows_reference(bench *b, int op, binv_dtype dt, size_t row, size_t cols) {
    const size_t rb = rows_row_bytes(dt, cols), hr = row % b->hrows;
    const unsigned char *xs = b->hx + hr * rb;
    double *v = b->rv, *ref = b->rref;
    for (size_t j = 0; j < cols; j++) {
        float f = hx_load(dt, xs, j);
        if (op == ROP_ADD_RMSNORM) { /* the sum in f32, rounded to the dtype, as stored */
            unsigned char tmp[4];
            hx_store(dt, tmp, 0, f + hx_load(dt, b->hr + hr * rb, j));
            f = hx_load(dt, tmp, 0);
        }
        v[j] = f;
    }
    double s1 = 0, s2 = 0, sabs = 0, mx = -INFINITY, scale = 0;
    for (size_t j = 0; j < cols; j++) {
        s1 += v[j];
        s2 += v[j] * v[j];
        sabs += fabs(v[j]);
        if (v[j] > mx) mx = v[j];
    }
    if (rop_f32_out(op)) {
        ref[0] = op == ROP_ROW_SUM ? s1 : s1 / (double)cols;
        return op == ROP_ROW_SUM ? sabs : sabs / (double)cols;
    }
    double mu = s1 / (double)cols, var = 0, se = 0;
    for (size_t j = 0; j < cols; j++) {
        var += (v[j] - mu) * (v[j] - mu);
        se += exp(v[j] - mx);
    }
    var /= (double)cols;
    const double rms = 1.0 / sqrt(s2 / (double)cols + (double)ROWS_EPS);
    const double isd = 1.0 / sqrt(var + (double)ROWS_EPS);
    for (size_t j = 0; j < cols; j++) {
        double w = hx_load(dt, b->hw, j), o;
        if (op == ROP_RMSNORM || op == ROP_ADD_RMSNORM) o = v[j] * rms * w;
        else if (op == ROP_LAYERNORM) o = (v[j] - mu) * isd * w + hx_load(dt, b->hb, j);
        else if (op == ROP_SOFTMAX) o = exp(v[j] - mx) / se;
        else o = v[j] - mx - log(se);
        ref[j] = o;
        if (fabs(o) > scale) scale = fabs(o);
    }
    return scale;
}

/* Max |output - reference| / scale for pool row `row`, whose output is in
 * b->yrow. */
static double rows_error(bench *b, int op, binv_dtype dt, size_t row, size_t cols) {
    double scale = rows_reference(b, op, dt, row, cols), worst = 0;
    size_t n = rop_f32_out(op) ? 1 : cols;
    for (size_t j = 0; j < n; j++) {
        double got = rop_f32_out(op) ? hx_load(BINV_DTYPE_F32, b->yrow, 0)
                                     : hx_load(dt, b->yrow, j);
        double e = fabs(got - b->rref[j]);
        if (isnan(e)) return INFINITY;
        if (e > worst) worst = e;
    }
    return scale > 0 ? worst / scale : worst;
}

/* f32 accumulation and the library's exp/log/rsqrt err by far less; the
 * output's rounding to the dtype is 2^-24, 2^-11 or 2^-8 of it. */
static double rows_tolerance(binv_dtype dt) {
    return dt == BINV_DTYPE_F32 ? 1e-4 : dt == BINV_DTYPE_F16 ? 2e-3 : 1.6e-2;
}

/* Reads row `row` of slot 0's output into b->yrow. */
static int rows_read(bench *b, const rows_cfg *c, size_t row) {
    if (rop_f32_out(c->op)) return read_back(b, b->pout, row * 4, 4, b->yrow);
    const size_t rb = rows_row_bytes(c->dt, c->cols);
    return read_back(b, b->py, row * rb, rb, b->yrow);
}

/* The checked call: slot 0, with x as filled (add_rmsnorm updates x in
 * place: it is restored before and after) and the outputs set to NaN first. */
static int rows_check(bench *b, const rows_cfg *c, double *err0, double *errlast,
                      uint64_t *hash0) {
    const size_t rb = rows_row_bytes(c->dt, c->cols);
    const int add = c->op == ROP_ADD_RMSNORM;
    if (add && fill_pool(b, b->px, b->hx, b->hrows, rb, b->rpool_rows)) return 1;
    if (rop_f32_out(c->op) ? fill_nan(b, b->pout, 0, c->rows * 4)
                           : fill_nan(b, b->py, 0, c->rows * rb))
        return 1;
    if (rows_call(b, c, 0)) return 1;
    if (rows_read(b, c, 0)) return 1;
    size_t bytes0 = rop_f32_out(c->op) ? 4 : rb;
    *hash0 = hx_hash(b->yrow, bytes0);
    record_row0(&b->rpat[c->sched], &b->rmeas[c->sched], b->yrow, bytes0);
    *err0 = rows_error(b, c->op, c->dt, 0, c->cols);
    *errlast = *err0;
    if (c->rows > 1) {
        if (rows_read(b, c, c->rows - 1)) return 1;
        *errlast = rows_error(b, c->op, c->dt, c->rows - 1, c->cols);
    }
    if (add && fill_pool(b, b->px, b->hx, b->hrows, rb, b->rpool_rows)) return 1;
    return 0;
}

static void rows_print_header(void) {
    printf("%-11s %-5s %6s %7s %-9s %6s %6s %10s %8s %8s %6s %9s %8s %5s\n", "op", "dtype",
           "rows", "cols", "schedule", "copies", "calls", "us/call", "host-us", "GB/s", "%BW",
           "adapt/inv", "err", "check");
}

static void rows_csv_fields(bench *b, const rows_cfg *c, const char *status) {
    csv_string(b->rows_csv, b->dev.name);
    fprintf(b->rows_csv, ",%s,%s,%s,%zu,%zu,%s", hx_dtype_name(c->dt), rops[c->op].name,
            sched_names[c->sched], c->rows, c->cols, status);
}

/* Measures one (op, rows, cols, schedule); inv_us is the invariant time of
 * the same shape (< 0: not measured), *us receives this one's. */
static int rows_measure(bench *b, const rows_cfg *cfg, double inv_us, double *us) {
    rows_cfg c = *cfg;
    *us = -1;
    if (!rows_fits(b, c.op, c.dt, c.rows, c.cols) ||
        c.rows > (c.op == ROP_ADD_RMSNORM ? b->rpool_rows : b->pool_rows)) {
        printf("%-11s %-5s %6zu %7zu %-9s skipped: buffers exceed 25%% of the device memory or "
               "CL_DEVICE_MAX_MEM_ALLOC_SIZE\n",
               rops[c.op].name, hx_dtype_name(c.dt), c.rows, c.cols, sched_names[c.sched]);
        rows_csv_fields(b, &c, "skipped");
        fprintf(b->rows_csv, ",,,,,,,,%.3f,,%.3f,,,,,\n", b->copy_gbs, b->launch_us);
        return 0;
    }
    c.slots = (c.op == ROP_ADD_RMSNORM ? b->rpool_rows : b->pool_rows) / c.rows;
    double ms = 0, host_ms = 0, err0 = 0, errlast = 0;
    int inner = 0;
    uint64_t hash0 = 0;
    if (time_calls(b, rows_call, &c, &ms, &inner, &host_ms)) return 1;
    if (rows_check(b, &c, &err0, &errlast, &hash0)) return 1;
    const double bytes = rows_traffic(c.op, c.dt, c.rows, c.cols);
    const double gbs = bytes / (ms * 1e-3) * 1e-9, frac = b->copy_gbs > 0 ? gbs / b->copy_gbs : 0;
    const double tol = rows_tolerance(c.dt);
    const int ok = err0 <= tol && errlast <= tol;
    if (!ok) b->any_bad = 1;
    *us = ms * 1e3;
    char ratio[16] = "";
    if (c.sched == SCHED_ADAPTIVE && inv_us > 0)
        snprintf(ratio, sizeof ratio, "%.2f", *us / inv_us);
    printf("%-11s %-5s %6zu %7zu %-9s %6zu %6d %10.2f %8.2f %8.1f %5.1f%% %9s %8.1e %5s\n",
           rops[c.op].name, hx_dtype_name(c.dt), c.rows, c.cols, sched_names[c.sched], c.slots,
           b->reps * inner, *us, host_ms * 1e3, gbs, 100.0 * frac, *ratio ? ratio : "-",
           errlast > err0 ? errlast : err0, ok ? "ok" : "BAD");
    fflush(stdout);
    rows_csv_fields(b, &c, "ok");
    fprintf(b->rows_csv, ",%d,%d,%zu,%.3f,%.3f,%.0f,%.3f,%.3f,%.4f,%.3f,%s,%.3e,%.3e,%s,%016llx\n",
            b->reps, inner, c.slots, *us, host_ms * 1e3, bytes, gbs, b->copy_gbs, frac,
            b->launch_us, ratio, err0, errlast, ok ? "ok" : "BAD", (unsigned long long)hash0);
    rows_result r = {c.dt, c.op, c.sched, c.rows, c.cols, *us};
    return push((void **)&b->rres, &b->nrres, &b->caprres, &r, sizeof r);
}

static int run_rows_shape(bench *b, binv_dtype dt, size_t cols) {
    printf("\n== rows %s  cols=%zu  (invariant chunk %zu) ==\n", hx_dtype_name(dt), cols,
           binv_rows_chunk_size(dt, cols));
    if (setup_rows_shape(b, dt, cols)) return 1;
    rows_print_header();
    for (int oi = 0; oi < b->opt.nrops; oi++) {
        const int op = b->opt.rops[oi];
        for (int s = 0; s < 2; s++) {
            hx_hashset_free(&b->rpat[s]);
            b->rmeas[s] = 0;
        }
        for (int ri = 0; ri < b->opt.rows.n; ri++) {
            double inv_us = -1;
            for (int s = 0; s < 2; s++) {
                if (!(s == SCHED_INVARIANT ? b->opt.run_invariant : b->opt.run_adaptive)) continue;
                const rows_cfg c = {op, s, dt, b->opt.rows.v[ri], cols, 0};
                double us;
                if (rows_measure(b, &c, inv_us, &us)) return 1;
                if (s == SCHED_INVARIANT) inv_us = us;
            }
        }
        for (int s = 0; s < 2; s++) {
            if (!b->rmeas[s]) continue;
            inv_summary sum = {dt, cols, 0, s, op, b->rmeas[s], b->rpat[s].count};
            if (push((void **)&b->rinv, &b->nrinv, &b->caprinv, &sum, sizeof sum)) return 1;
        }
    }
    free_rows_shape(b);
    return 0;
}

static void print_rows_summary(const bench *b) {
    printf("\nRows batch invariance: row 0 of x is the same for every rows; is row 0 of the "
           "output bitwise the same for every rows?\n");
    printf("%-11s %-5s %7s %-9s %5s  %-9s %s\n", "op", "dtype", "cols", "schedule", "#rows",
           "invariant", "distinct row-0 bit patterns");
    int broken = 0;
    for (size_t i = 0; i < b->nrinv; i++) {
        const inv_summary *s = &b->rinv[i];
        printf("%-11s %-5s %7zu %-9s %5d  %-9s %d\n", rops[s->op].name, hx_dtype_name(s->dtype),
               s->n, sched_names[s->impl], s->nm, s->distinct == 1 ? "yes" : "NO", s->distinct);
        if (s->impl == SCHED_INVARIANT && s->distinct != 1) broken = 1;
    }
    if (broken)
        printf("WARNING: the invariant schedule produced different row-0 bits at different row "
               "counts: the library's batch-invariance contract is broken on this device.\n");
    /* The decode-time target: one row of a 152064-wide vocabulary. */
    for (size_t i = 0; i < b->nrres; i++) {
        const rows_result *r = &b->rres[i];
        if (r->op == ROP_SOFTMAX && r->rows == 1 && r->cols == 152064)
            printf("softmax 1 x 152064 %s %s: %.2f us per call (target <= 15 us on an H100; "
                   "launch floor %.2f us per kernel)\n",
                   hx_dtype_name(r->dtype), sched_names[r->sched], r->us, b->launch_us);
    }
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
        const char *dn = hx_dtype_name(r0->dtype);
        snprintf(path, plen, "%s/gemm-%s-%zux%zu.dat", dir, dn, r0->n, r0->k);
        snprintf(png, plen, "%s/gemm-%s-%zux%zu.png", dir, dn, r0->n, r0->k);
        f = fopen(path, "w");
        if (!f) {
            rc = fail("cannot write %s: %s", path, strerror(errno));
            goto done;
        }
        fprintf(f, "m");
        for (int q = 0; q < nimpl; q++) fprintf(f, " %s", impl_names[impls[q]]);
        fprintf(f, "\n");
        for (int mi = 0; mi < b->opt.ms.n; mi++) {
            size_t m = b->opt.ms.v[mi];
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
                 path, png, dn, r0->n, r0->k, b->copy_gbs, nimpl + 1, dir);
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
    /* hx_device_open prints why it failed. */
    if (hx_device_open(b->opt.device, &b->dev)) return 1;
    cl_device_id dev = b->dev.device;
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof b->compute_units,
                           &b->compute_units, NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)");
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof b->global_mem, &b->global_mem,
                           NULL),
           "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)");
    CL_TRY(clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof b->max_alloc, &b->max_alloc,
                           NULL),
           "clGetDeviceInfo(CL_DEVICE_MAX_MEM_ALLOC_SIZE)");
    b->is_gpu = (b->dev.type & CL_DEVICE_TYPE_GPU) != 0;
    b->has_fp16 = device_has_ext(dev, "cl_khr_fp16");
    b->reps = b->opt.reps ? b->opt.reps : (b->is_gpu ? 20 : 3);
    /* cli's queue records profiling timestamps; the timing here is wall
     * clock, so a plain queue keeps that cost out of the numbers. */
    b->queue = clCreateCommandQueue(b->dev.context, dev, 0, &err);
    CL_TRY(err, "clCreateCommandQueue");

    for (int s = 0; s < 2; s++) {
        if (!(s == SCHED_INVARIANT ? b->opt.run_invariant : b->opt.run_adaptive)) continue;
        binv_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.schedule = s == SCHED_INVARIANT ? BINV_SCHEDULE_INVARIANT : BINV_SCHEDULE_ADAPTIVE;
        binv_status st = binv_context_create(b->dev.context, dev, &o, &b->binv[s]);
        if (st != BINV_SUCCESS)
            /* No context exists to ask binv_context_last_error(): the
             * library logs the detailed reason to stderr with BINV_DEBUG. */
            return fail("binv_context_create(%s) on '%s' failed: %s (%d); rerun with "
                        "BINV_DEBUG=1 for the library's detailed message",
                        sched_names[s], b->dev.name, binv_status_string(st), st);
    }

    /* The native tensor-core path, where the device has it (GEMM only). */
    if (b->opt.run_invariant && (b->opt.run & RUN_GEMM)) {
        binv_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.path = BINV_PATH_NATIVE;
        if (binv_context_create(b->dev.context, dev, &o, &b->binv[SCHED_NATIVE]) == BINV_SUCCESS &&
            binv_context_path(b->binv[SCHED_NATIVE]) != BINV_PATH_NATIVE) {
            printf("binv-native: %s\n", binv_context_last_error(b->binv[SCHED_NATIVE]));
            binv_context_destroy(b->binv[SCHED_NATIVE]);
            b->binv[SCHED_NATIVE] = NULL;
        }
    }

    printf("binv-bench %s: device '%s' (%s, platform '%s'), %u compute units, %.1f GiB, "
           "cl_khr_fp16 %s\n",
           binv_version_string(), b->dev.name, type_name(b->dev.type), b->dev.platform_name,
           b->compute_units, (double)b->global_mem / (1024.0 * 1024.0 * 1024.0),
           b->has_fp16 ? "yes" : "no");
    if (b->opt.run & RUN_GEMM) {
#ifdef BINV_HAVE_CLBLAST
        printf("CLBlast: compiled in (SGEMM; HGEMM only with cl_khr_fp16; no bf16)\n");
#else
        printf("CLBlast: not compiled in (no clblast column)\n");
#endif
    }
    const char *env[] = {"BINV_GEMM_PATH", "BINV_GEMM_TILE", "BINV_ROWS_PATH", "BINV_ATTN_PATH",
                         "BINV_DEBUG"};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        const char *v = getenv(env[i]);
        if (v && *v) printf("note: %s=%s is set\n", env[i], v);
    }
    printf("timing: median of %d reps of a batch of calls (wall clock, one clFinish per batch)\n",
           b->reps);
    return 0;
}

static int run_gemm(bench *b) {
#ifdef BINV_HAVE_CLBLAST
    const char *vs_note = " vs-clbl = CLBlast time / this time;";
#else
    const char *vs_note = "";
#endif
    printf("\nGEMM: layout A[m,k] x W[n,k]^T = C[m,n], alpha=1, beta=0\n");
    printf("columns: calls = calls timed; GB/s = operand bytes / time; %%BW = that / copy "
           "bandwidth;%s err = max |C - ref| / sum|a*w| over rows 0 and m-1\n", vs_note);
    if (open_csv(&b->csv, b->opt.csv,
                 "device,dtype,impl,m,n,k,status,reps,calls_per_rep,weight_copies,ms,"
                 "gflops,operand_gbs,copy_gbs,frac_copy_bw,vs_clblast,err_row0,"
                 "err_row_last,check,row0_fnv1a64\n"))
        return 1;
    /* The plot directory is made now so that a bad name fails before the run. */
    if (b->opt.plot_dir && mkdir(b->opt.plot_dir, 0777) != 0 && errno != EEXIST)
        return fail("cannot create plot directory '%s': %s", b->opt.plot_dir, strerror(errno));
    for (int d = 0; d < b->opt.ndtypes; d++)
        for (int s = 0; s < b->opt.nnk; s++)
            if (run_shape(b, b->opt.dtypes[d], b->opt.ns[s], b->opt.ks[s])) return 1;
    print_invariance_summary(b);
    if (close_csv(&b->csv, b->opt.csv)) return 1;
    return b->opt.plot_dir ? write_plots(b) : 0;
}

static int run_rows(bench *b) {
    printf("\nRow reductions (eps %g): bytes moved per call = esz x (matrices read + written) x "
           "rows x cols + esz x vectors x cols: x read once and y written once (add_rmsnorm: x "
           "and residual read, x and y written; row_sum/row_mean: 4 B per row written), "
           "weight/gamma/beta read once; the split path's workspace is not counted\n",
           (double)ROWS_EPS);
    printf("columns: copies = input copies rotated; us/call = median time per call; host-us = "
           "host time to issue a call (library checks and enqueues); GB/s = bytes moved / time; "
           "%%BW = that / copy bandwidth; adapt/inv = adaptive time / invariant time; err = "
           "max |y - ref| / max |ref| over rows 0 and rows-1\n");
    if (open_csv(&b->rows_csv, b->opt.rows_csv,
                 "device,dtype,op,schedule,rows,cols,status,reps,calls_per_rep,copies,"
                 "us_per_call,host_us_per_call,bytes_per_call,gbs,copy_gbs,frac_copy_bw,"
                 "launch_floor_us,adaptive_over_invariant,err_row0,err_row_last,check,"
                 "row0_fnv1a64\n"))
        return 1;
    for (int d = 0; d < b->opt.ndtypes; d++)
        for (int ci = 0; ci < b->opt.cols.n; ci++)
            if (run_rows_shape(b, b->opt.dtypes[d], b->opt.cols.v[ci])) return 1;
    print_rows_summary(b);
    return close_csv(&b->rows_csv, b->opt.rows_csv);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                */

enum { ATTN_HEADS = 32, ATTN_KV_HEADS = 8, ATTN_D = 128 };

typedef struct attn_cfg {
    int sched;
    binv_kv_cache cache;
    binv_kv_batch *batch[2]; /* per schedule: a batch belongs to one context */
    cl_mem q, o;
    float scale;
} attn_cfg;

static int attn_call(bench *b, const void *cfg, unsigned long slot) {
    const attn_cfg *c = cfg;
    (void)slot;
    const size_t ld = ATTN_HEADS * ATTN_D;
    binv_status st = binv_attention(b->binv[c->sched], b->queue, &c->cache, c->batch[c->sched],
                                    ATTN_HEADS, c->scale, c->q, 0, ld, c->o, 0, ld, 0, NULL, NULL);
    if (st != BINV_SUCCESS)
        return fail("binv_attention: %s", binv_context_last_error(b->binv[c->sched]));
    return 0;
}

/* One shape: `seqs` sequences of `ctx` tokens, `qlen` new tokens each
 * (1: decode; ctx: prefill), pages shuffled over the pool.  Times both
 * schedules, prints and writes one row each. */
static int attn_shape(bench *b, FILE *csv, binv_dtype dt, const char *kind, size_t seqs,
                      size_t ctx, size_t qlen) {
    const size_t es = hx_dtype_size(dt), kvd = ATTN_KV_HEADS * ATTN_D;
    const size_t pps = (ctx + BINV_KV_PAGE_SIZE - 1) / BINV_KV_PAGE_SIZE, pages = seqs * pps;
    const size_t pool = pages * BINV_KV_PAGE_SIZE * kvd * es, T = seqs * qlen;
    const size_t qbytes = T * ATTN_HEADS * ATTN_D * es;
    if (pool > b->max_alloc || 2 * (cl_ulong)pool + 2 * qbytes > b->global_mem / 10 * 8) {
        printf("%-8s %-5s %6zu %7zu  skipped: the pools need 2 x %.1f GB\n", kind,
               hx_dtype_name(dt), seqs, ctx, (double)pool / 1e9);
        return 0;
    }
    attn_cfg c;
    memset(&c, 0, sizeof c);
    c.scale = 1.0f / sqrtf((float)ATTN_D);
    c.cache = (binv_kv_cache){dt, pages, ATTN_KV_HEADS, ATTN_D, NULL, NULL};
    cl_uint *ql = malloc(seqs * sizeof *ql), *cl = malloc(seqs * sizeof *cl);
    cl_uint *pt = malloc(pages * sizeof *pt);
    unsigned char *hq = malloc(qbytes), pattern[128];
    int rc = 0;
    if (!ql || !cl || !pt || !hq) rc = fail("out of host memory");
    uint64_t r = 12345;
    for (size_t i = 0; !rc && i < pages; i++) pt[i] = (cl_uint)i;
    for (size_t i = pages - 1; !rc && i > 0; i--) { /* non-contiguous, shuffled pages */
        size_t j = (size_t)(hx_rng_next(&r) % (i + 1));
        cl_uint t = pt[i]; pt[i] = pt[j]; pt[j] = t;
    }
    for (size_t s = 0; !rc && s < seqs; s++) { ql[s] = (cl_uint)qlen; cl[s] = (cl_uint)ctx; }
    uint64_t seed = 77;
    if (!rc) fill_data(dt, hq, NULL, T * ATTN_HEADS * ATTN_D, &seed);
    if (!rc) fill_data(dt, pattern, NULL, sizeof pattern / es, &seed);
    if (!rc) rc = create_buffer(b, pool, NULL, &c.cache.k, "K pool");
    if (!rc) rc = create_buffer(b, pool, NULL, &c.cache.v, "V pool");
    if (!rc) rc = create_buffer(b, qbytes, hq, &c.q, "Q");
    if (!rc) rc = create_buffer(b, qbytes, NULL, &c.o, "O");
    /* Pool contents: a 128-byte pattern repeated (the kernels' speed does not
     * depend on the values). */
    if (!rc && clEnqueueFillBuffer(b->queue, c.cache.k, pattern, sizeof pattern, 0, pool, 0, NULL,
                                   NULL) != CL_SUCCESS)
        rc = fail("clEnqueueFillBuffer failed");
    if (!rc && clEnqueueFillBuffer(b->queue, c.cache.v, pattern, sizeof pattern, 0, pool, 0, NULL,
                                   NULL) != CL_SUCCESS)
        rc = fail("clEnqueueFillBuffer failed");
    double us[2] = {0, 0};
    for (int sc = 0; !rc && sc < 2; sc++) {
        if (!b->binv[sc]) continue;
        binv_status st = binv_kv_batch_create(b->binv[sc], b->queue, pages, seqs, ql, cl, pt, pps,
                                              &c.batch[sc]);
        if (st != BINV_SUCCESS) {
            rc = fail("binv_kv_batch_create: %s", binv_context_last_error(b->binv[sc]));
            break;
        }
        c.sched = sc;
        double ms = 0;
        int inner = 0;
        if ((rc = time_calls(b, attn_call, &c, &ms, &inner, NULL))) break;
        us[sc] = 1e3 * ms;
    }
    /* decode: KV bytes read; prefill: 2 flops per multiply-add of QK^T and PV
     * over the causal triangle. */
    const double kv_bytes = 2.0 * (double)seqs * (double)ctx * (double)kvd * (double)es;
    const double flops = 4.0 * ATTN_HEADS * ATTN_D * (double)seqs *
                         ((double)ctx * (ctx + 1) / 2 - (double)(ctx - qlen) * (ctx - qlen + 1) / 2);
    for (int sc = 0; !rc && sc < 2; sc++) {
        if (!b->binv[sc]) continue;
        const double gbs = kv_bytes / (us[sc] * 1e3), tf = flops / (us[sc] * 1e6);
        const double ratio = b->binv[0] && b->binv[1] ? us[1] / us[0] : 0.0;
        printf("%-8s %-5s %6zu %7zu  %-9s %10.1f %8.1f %6.1f%% %8.2f %7.2f\n", kind,
               hx_dtype_name(dt), seqs, ctx, sched_names[sc], us[sc], gbs,
               100.0 * gbs / b->copy_gbs, tf, ratio);
        fprintf(csv, "%s,%s,%s,%s,%zu,%zu,%zu,%d,%d,%d,%.3f,%.0f,%.2f,%.2f,%.4f,%.4f,%.4f\n",
                b->dev.name, hx_dtype_name(dt), kind, sched_names[sc], seqs, ctx, qlen,
                ATTN_HEADS, ATTN_KV_HEADS, ATTN_D, us[sc], kv_bytes, gbs, b->copy_gbs,
                gbs / b->copy_gbs, tf, ratio);
    }
    for (int sc = 0; sc < 2; sc++) binv_kv_batch_destroy(c.batch[sc]);
    release_mem(&c.cache.k);
    release_mem(&c.cache.v);
    release_mem(&c.q);
    release_mem(&c.o);
    free(ql); free(cl); free(pt); free(hq);
    return rc;
}

static int run_attention(bench *b) {
    printf("\nAttention over the paged KV cache: %d query heads, %d KV heads, head_dim %d, page "
           "%d tokens, pages shuffled\n", ATTN_HEADS, ATTN_KV_HEADS, ATTN_D, BINV_KV_PAGE_SIZE);
    printf("columns: us = median time of one binv_attention call (K/V already appended); GB/s "
           "= K+V bytes of the contexts / time; %%BW = that / copy bandwidth; TFLOP/s = "
           "4*heads*head_dim*(causal pairs) / time; adapt/inv = adaptive time / invariant "
           "time\n");
    printf("%-8s %-5s %6s %7s  %-9s %10s %8s %7s %8s %7s\n", "kind", "dtype", "seqs", "ctx",
           "schedule", "us", "GB/s", "%BW", "TFLOP/s", "ad/inv");
    FILE *csv = NULL;
    if (open_csv(&csv, b->opt.attn_csv,
                 "device,dtype,kind,schedule,seqs,ctx,q_len,heads,kv_heads,head_dim,us_per_call,"
                 "kv_bytes,kv_gbs,copy_gbs,frac_copy_bw,tflops,adaptive_over_invariant\n"))
        return 1;
    int rc = 0;
    for (int d = 0; !rc && d < b->opt.ndtypes; d++) {
        const binv_dtype dt = b->opt.dtypes[d];
        for (int i = 0; !rc && i < b->opt.attn_batch.n; i++)
            for (int j = 0; !rc && j < b->opt.attn_ctx.n; j++)
                rc = attn_shape(b, csv, dt, "decode", b->opt.attn_batch.v[i],
                                b->opt.attn_ctx.v[j], 1);
        if (!rc && b->opt.attn_prefill)
            rc = attn_shape(b, csv, dt, "prefill", 1, b->opt.attn_prefill, b->opt.attn_prefill);
    }
    int crc = close_csv(&csv, b->opt.attn_csv);
    return rc ? rc : crc;
}

static void teardown(bench *b) {
    free_shape(b);
    free_rows_shape(b);
    for (int s = 0; s < 2; s++) hx_hashset_free(&b->rpat[s]);
#ifdef BINV_HAVE_CLBLAST
    /* CLBlast caches programs built for this context: drop them first. */
    CLBlastClearCache();
#endif
    for (int s = 0; s < 3; s++) binv_context_destroy(b->binv[s]);
    if (b->queue) clReleaseCommandQueue(b->queue);
    hx_device_close(&b->dev);
    if (b->csv) fclose(b->csv);
    if (b->rows_csv) fclose(b->rows_csv);
    free(b->res);
    free(b->inv);
    free(b->rres);
    free(b->rinv);
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
    if (b.opt.list) {
        hx_device_list(stdout);
        return 0;
    }
    int rc = setup_device(&b);
    if (!rc) rc = measure_copy_bandwidth(&b);
    if (!rc && (b.opt.run & RUN_GEMM)) rc = run_gemm(&b);
    if (!rc && (b.opt.run & RUN_ROWS)) rc = run_rows(&b);
    if (!rc && (b.opt.run & RUN_ATTN)) rc = run_attention(&b);
    if (!rc && b.any_bad)
        rc = fail("some results are wrong (check = BAD above: error relative to the term "
                  "magnitudes beyond the tolerance)");
    teardown(&b);
    return rc ? 1 : 0;
}
