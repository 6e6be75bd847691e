/* binv-study's parts, one file per op family (gemm.c, rows.c, attention.c,
 * atomics.c) over the shared sweep (sweep.c), the report (report.c) and the
 * plots (plot.c); main.c holds the command line and the family table.
 * tools/study/main.c says what the program measures. */
#ifndef BINV_TOOLS_STUDY_TOOL_H
#define BINV_TOOLS_STUDY_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "harness.h"

typedef enum { IMPL_CLBLAST, IMPL_ADAPTIVE, IMPL_INVARIANT, IMPL_COUNT } impl_id;
extern const char *const IMPL_NAME[IMPL_COUNT];
/* Plot colours, one per implementation (dtypes differ by point and dash). */
extern const char *const IMPL_COLOR[IMPL_COUNT];

enum { NDTYPES = 3, MAX_BATCHES = 32 };
extern const binv_dtype DTYPES[NDTYPES]; /* f32, f16, bf16 */

typedef struct options {
    const char *device, *out, *only, *dtypes;
    int quick, repeats, list, verbose;
    int clblast_probe; /* internal: --clblast-probe, see clblast_usable() */
    size_t n, k, router_n, max_batch; /* gemm */
    size_t cols, max_rows;            /* rows: cols overrides every case's width */
    size_t attn_ctx;                  /* attention: context of the studied sequence */
    const char *llm_report;           /* a binv-llm --report section to include */
    size_t atomic_n;                  /* atomics */
    int atomic_repeats;
} options;

/* Row 0 of one batch size. */
typedef struct point {
    size_t batch;
    double max_abs, max_ulp, ms;
    int distinct_so_far;
} point;

/* One sweep: an op at one shape, by one implementation in one dtype, over
 * batch sizes. */
typedef struct series {
    const char *family;
    char op[24], shape[40];
    size_t cols;       /* rows family: the row width (for the schedule rule) */
    impl_id impl;
    binv_dtype dtype;
    int distinct, deterministic;
    double max_abs, max_ulp;
    point pts[MAX_BATCHES];
    size_t npts;
} series;

/* One method of the atomics family, run R times on the same vector. */
typedef struct atomic_method {
    const char *name;
    float *values; /* one result per repeat */
    int distinct;
    double ms;
} atomic_method;

enum { ATOMIC_METHODS = 3 };

typedef struct study {
    hx_device dev;
    size_t cus;
    binv_context *inv, *adapt;
    int tty;             /* progress lines on stderr */
    series *ser;
    size_t nser, cap;
    size_t total, done;  /* sweeps of the running family, for progress */
    atomic_method atom[ATOMIC_METHODS];
    size_t atom_n;
    int atom_repeats;
    double atom_ref;
    int atom_ran;
    int clblast_ok; /* 0 when CLBlast failed its probe on this device (clblast_usable) */
} study;

/* ---- The sweep shared by the batch families (sweep.c) ---------------------- */

struct op_case;
typedef int (*call_fn)(study *s, const struct op_case *c, impl_id impl, size_t batch);

/* A batched op: one call at batch b on buffers sized for the largest batch.
 * Row r of `in` (in_cols elements) is request r; row 0 is the request under
 * study, and its output is the first out_cols elements of `out`.  A family
 * whose batch is more than rows of one matrix (attention: the sequences of a
 * step and their KV cache) sets `prepare`, called after the input is written
 * for batch b and before any call, and keeps its own state in `user`. */
typedef struct op_case {
    const char *family;
    char op[24], shape[40];
    int rop;               /* rows family: which op (hx_rows_op) */
    binv_dtype dt;         /* storage dtype of the batch input */
    binv_dtype out_dt;     /* dtype of the output (row_sum: f32) */
    size_t in_cols;        /* elements per request row */
    size_t out_cols;       /* elements per output row */
    size_t n, k;           /* gemm */
    float scale;           /* input values: uniform in (-scale, scale) */
    cl_mem in, pristine;   /* pristine: a copy of `in` for ops that write their input */
    cl_mem out, w, w2, res;
    call_fn call;
    /* One line of the family's CSV for one batch size. */
    void (*csv_row)(FILE *f, const study *s, const struct op_case *c, impl_id impl,
                    const point *p);
    int (*prepare)(study *s, const struct op_case *c, size_t batch); /* may be NULL */
    void *user;
} op_case;

/* Runs op case c by implementation impl over the batch sizes bs[0..nb),
 * adds its series to the study, prints it and writes its CSV lines. */
int sweep(study *s, const options *o, const op_case *c, impl_id impl, const size_t *bs, size_t nb,
          FILE *csv);

int dtype_wanted(const options *o, binv_dtype dt);
/* 0 when st is BINV_SUCCESS; otherwise -1 after the line "error: what:
 * status: the context's message" on stderr. */
int binv_failed(binv_context *ctx, binv_status st, const char *what);
/* Activations and weights of LLM-like scale: uniform in (-1, 1) times scale,
 * plus offset, stored in the dtype (round to nearest even). */
void fill(binv_dtype dt, void *dst, size_t count, uint64_t seed, float scale, float offset);
/* Appends to a bounded string (truncates silently: labels only). */
void append(char *buf, size_t cap, const char *fmt, ...);
/* A device buffer, initialised from host when host is not NULL; NULL with a
 * message on failure. */
cl_mem buffer(study *s, size_t bytes, const void *host);
void release(cl_mem *m);
/* A new, zeroed series at the end of the study's list (NULL: out of memory). */
series *new_series(study *s);
/* Progress of long sweeps on a terminal (progress_clear erases the line). */
void progress(study *s, const char *what, size_t batch);
void progress_clear(study *s);
void print_series_header(void);
void print_series(const series *r);

/* ---- Op families (main.c runs them in FAMILIES' order) ---------------------- */

typedef struct family {
    const char *id, *title;
    int (*run)(study *s, const options *o, FILE *csv); /* NULL: not measured yet */
    void (*report)(FILE *f, const study *s, const options *o);
    void (*plot)(FILE *gp, const study *s, const options *o);
    const char *pending; /* why run is NULL */
} family;

enum { NFAMILIES = 4 }; /* the entries of FAMILIES (main.c) */
extern const family FAMILIES[NFAMILIES];

int gemm_run(study *s, const options *o, FILE *csv);
void gemm_report(FILE *f, const study *s, const options *o);
void gemm_plot(FILE *g, const study *s, const options *o);
#ifdef BINV_HAVE_CLBLAST
/* The child's side of the CLBlast probe (--clblast-probe): exit status 0
 * when CLBlast's SGEMM is right on this device. */
int clblast_probe_run(const options *o);
/* Whether CLBlast is usable here: the probe, in a process of its own under a
 * deadline. */
int clblast_usable(const options *o, const char *argv0);
#endif

int rows_run(study *s, const options *o, FILE *csv);
void rows_report(FILE *f, const study *s, const options *o);
void rows_plot(FILE *g, const study *s, const options *o);

int attention_run(study *s, const options *o, FILE *csv);
void attention_report(FILE *f, const study *s, const options *o);
void attention_plot(FILE *g, const study *s, const options *o);

int atomics_run(study *s, const options *o, FILE *csv);
void atomics_report(FILE *f, const study *s, const options *o);
void atomics_plot(FILE *g, const study *s, const options *o);

/* ---- Report (report.c) and plots (plot.c) ----------------------------------- */

/* Series of a family (impl < 0: any implementation; varying: only those
 * whose row 0 took more than one bit pattern). */
size_t count_series(const study *s, const char *family, int impl, int varying);
/* The family's summary table, one line per series. */
void summary_table(FILE *f, const study *s, const char *family, const char *batch);
/* Max ulp of row 0 against batch 1, one column per batch size ("=" where the
 * bits are identical); with_width adds the adaptive rule's chunk widths. */
void batch_matrix(FILE *f, const study *s, const char *family, const char *batch,
                  int with_width);
/* The end of a batch family's section: the caption, its batch_matrix, the
 * note on its CSV and plots (files), and the two plots
 * (<family>_maxdiff.png, <family>_distinct.png). */
void section_tail(FILE *f, const study *s, const char *family, const char *batch, int with_width,
                  const char *caption, const char *files);
/* Lists the series whose row 0 took more than one bit pattern. */
void varying_list(FILE *f, const study *s, const char *family);
/* report.md: the summary over the families that ran (ran[i]), then each
 * family's section. */
void write_report(const study *s, const options *o, const int *ran, double seconds);

/* One panel of max |diff| plots: an op at one shape. */
typedef struct panel {
    const char *op;
    char shape[40];
    size_t key5; /* CSV column 5 (gemm: n, rows: cols) of this shape */
} panel;

/* Max |diff| (CSV column diff_col) against batch: a panel per op and shape,
 * a line per (implementation, dtype), one shared legend in the last cell.
 * CSV columns: op 1, impl 2, dtype 3, batch 4, key5 5.  The y range is the
 * same in every panel so that panels compare; bit-identical is drawn at
 * FLOOR. */
void plot_maxdiff(FILE *g, const study *s, const char *family, const char *csv, const char *png,
                  const char *title, const char *xlabel, const panel *p, int np, int diff_col);
/* Distinct outputs per implementation: a bar per (implementation, dtype),
 * grouped by op and shape, from an inline data block (x, distinct, impl,
 * dtype index). */
void plot_distinct(FILE *g, const study *s, const char *family, const char *png,
                   const char *title);
/* plot.gp from every family that ran, then gnuplot on it (when installed). */
void plot(const study *s, const options *o, const int *ran);

#endif
