/* binv-bench's shared state and the functions its files export to each
 * other (bench/main.c says what is measured). */
#ifndef BINV_BENCH_H
#define BINV_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "harness.h"

#define MAX_LIST 64

enum { IMPL_CLBLAST = 0, IMPL_INVARIANT = 1, IMPL_ADAPTIVE = 2, IMPL_NATIVE = 3, IMPL_COUNT = 4 };
extern const char *const impl_names[IMPL_COUNT];

/* binv schedules, index into bench.binv[]. */
enum { SCHED_INVARIANT = 0, SCHED_ADAPTIVE = 1, SCHED_NATIVE = 2 /* invariant, native path */ };
extern const char *const sched_names[2];

enum { RUN_GEMM = 1, RUN_ROWS = 2, RUN_ATTN = 4, RUN_DECODE = 8 };

#define ROWS_EPS 1e-5f

typedef struct size_list {
    size_t v[MAX_LIST];
    int n;
} size_list;

typedef struct options {
    const char *device;   /* NULL: BINV_DEVICE, else first GPU, else first device */
    int list;
    int quick;
    int run;              /* RUN_GEMM | RUN_ROWS | RUN_ATTN */
    const char *csv, *rows_csv;
    binv_dtype dtypes[3];
    int ndtypes;
    int reps;             /* 0: 20 on a GPU, 3 otherwise */
    size_list ms;
    size_t ns[MAX_LIST], ks[MAX_LIST];
    int nnk;
    int rops[HX_ROWS_COUNT], nrops;
    size_list rows, cols;
    int run_invariant, run_adaptive;
    const char *plot_dir;
    int wcopies;          /* 0: automatic */
    const char *attn_csv;
    size_list attn_batch, attn_ctx;
    size_t attn_prefill;
    const char *decode_csv, *decode_model;
    size_list decode_batch, decode_ctx;
    int decode_steps;
} options;

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
    unsigned char *ha, *hw; /* host storage of A (max m rows) and W */
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
    cl_mem px, pr, py, pout, pw, pb, pids;
    size_t pool_rows, rpool_rows, vslots;
    unsigned char *hx, *hr, *hvw, *hvb; /* host data: hrows rows of x and r, one vector each */
    cl_uint *hids;         /* selected_log_softmax: the id of host row i (pool row i: i % hrows) */
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

/* options.c: returns 0 to go on, 1 on a usage error, 2 after --help. */
int parse_args(int argc, char **argv, options *o);

/* util.c.  Every error path prints one message through fail() and unwinds
 * to main, which frees everything and exits with status 1. */
int fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
#define CL_TRY(call, what)                                                            \
    do {                                                                              \
        cl_int e_ = (call);                                                           \
        if (e_ != CL_SUCCESS) return fail("%s failed: OpenCL error %d", (what), (int)e_); \
    } while (0)
/* Appends elem (of size sz) to the growable array *arr of *n used, *cap slots. */
int push(void **arr, size_t *n, size_t *cap, const void *elem, size_t sz);
double median(double *v, int n);
int create_buffer(bench *b, size_t bytes, const void *init, cl_mem *out, const char *what);
void release_mem(cl_mem *m);
int fill_nan(bench *b, cl_mem buf, size_t off, size_t bytes);
int read_back(bench *b, cl_mem buf, size_t off, size_t bytes, void *dst);
/* Adds the hash of a row-0 read back to the distinct patterns. */
void record_row0(hx_hashset *set, int *nmeas, const void *row, size_t bytes);

/* timing.c */
/* One call of the configuration `cfg` on copy `slot` of its inputs (the
 * callee reduces slot modulo its number of copies). */
typedef int (*bench_call)(bench *b, const void *cfg, unsigned long slot);
int time_calls(bench *b, bench_call call, const void *cfg, double *ms, int *inner_out,
               double *host_ms);
int measure_copy_bandwidth(bench *b);

/* report.c */
void csv_string(FILE *f, const char *s);
int open_csv(FILE **f, const char *path, const char *header);
int close_csv(FILE **f, const char *path);
int write_plots(const bench *b);
void write_csv_row(bench *b, const result *r);
void print_table_header(void);
void print_row(const result *r);
void print_invariance_summary(const bench *b);
void print_rows_summary(const bench *b);

/* gemm.c, rows.c, attention.c: one family each. */
int run_gemm(bench *b);
void free_shape(bench *b);
int run_rows(bench *b);
void free_rows_shape(bench *b);
int run_attention(bench *b);
int run_decode(bench *b);

#endif
