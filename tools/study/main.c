/* binv-study: measures batch variance and run-to-run nondeterminism on an
 * OpenCL device, and what libbinv-cl's invariant schedule does about them.
 *
 * Op families (FAMILIES[] below: each measures, reports and plots
 * itself, so a new op family is one more entry):
 *  - gemm:    the same request (row 0 of A) computed alone and as row 0 of
 *             batches of 2..N rows, by CLBlast, libbinv adaptive and libbinv
 *             invariant;
 *  - rows:    the same for the row reductions (rmsnorm, add_rmsnorm,
 *             layernorm, softmax, log_softmax, row_sum) over row counts, for
 *             libbinv adaptive and invariant;
 *  - attention: sequence 0's last prompt token decoded in steps of 1..N
 *             sequences, and computed in one-shot, chunked and decode
 *             prefills, for libbinv adaptive and invariant;
 *  - atomics: run-to-run nondeterminism, which is a different thing: a float
 *             sum by atomic compare-and-swap (a kernel of atomics.c, not of
 *             the library) run R times on the same input, against
 *             binv_row_sum of the same data.
 * For every sweep: how far row 0 moves from its batch-of-1 value (max |diff|,
 * max ulp), how many distinct bit patterns it takes, whether R repeated calls
 * at the largest batch give the same bits, and the time per call.  Writes a
 * report folder: report.md, CSVs and (with gnuplot) PNG plots. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "study_tool.h"

/* ---- Op families --------------------------------------------------------------
 * Each family measures into the study (run, which writes its CSV), then
 * writes its report section and its plots; main() runs the families in this
 * order and the summary table covers them all. */

const family FAMILIES[NFAMILIES] = {
    {"gemm", "GEMM", gemm_run, gemm_report, gemm_plot, NULL},
    {"rows", "Row reductions", rows_run, rows_report, rows_plot, NULL},
    {"attention", "Attention", attention_run, attention_report, attention_plot, NULL},
    {"atomics", "Run-to-run nondeterminism (atomics)", atomics_run, atomics_report, atomics_plot,
     NULL},
};

static int family_wanted(const options *o, const family *fam) {
    if (!o->only) return 1;
    /* a comma-separated list of ids */
    const char *p = o->only;
    size_t len = strlen(fam->id);
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && !strncmp(p, fam->id, len)) return 1;
        p += l + (e ? 1 : 0);
    }
    return 0;
}

/* ---- Command line -------------------------------------------------------------- */

/* The usage (%s: the program's name). */
static const char USAGE[] =
    "usage: %s [--device gpu|cpu|P:D] [--list] [--quick] [--out DIR] [--repeats R]\n"
    "          [--only gemm,rows,attention,atomics] [--dtypes f32,f16,bf16] [--verbose]\n"
    "          [--max-batch N] [--n N] [--k K] [--router-n N]    (gemm)\n"
    "          [--max-rows N] [--cols N]                          (rows)\n"
    "          [--attn-ctx L]                                     (attention)\n"
    "          [--llm-report FILE]     include binv-llm's --report section\n"
    "          [--atomic-n N] [--atomic-repeats R]                (atomics)\n"
    "Measures how much the same request's output changes with the batch it is in\n"
    "(GEMM: CLBlast, libbinv adaptive, libbinv invariant; row reductions: libbinv\n"
    "adaptive and invariant), and run-to-run nondeterminism of float atomics against\n"
    "binv_row_sum.  --cols sets every row reduction's width (small test runs);\n"
    "--router-n 0 leaves out the narrow GEMM.\n";

/* --help: the usage on stdout, exit status 0; a bad command line: on stderr, 2. */
static int usage_to(FILE *f, int status, const char *argv0) {
    fprintf(f, USAGE, argv0);
    return status;
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){0};
    o->out = "binv-study-report";
    o->repeats = 5;
    o->router_n = 64;
    o->atomic_repeats = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) o->quick = 1;
        else if (!strcmp(a, "--clblast-probe")) o->clblast_probe = 1;
        else if (!strcmp(a, "--list")) o->list = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--device") && v) o->device = argv[++i];
        else if (!strcmp(a, "--out") && v) o->out = argv[++i];
        else if (!strcmp(a, "--only") && v) o->only = argv[++i];
        else if (!strcmp(a, "--dtypes") && v) o->dtypes = argv[++i];
        else if (!strcmp(a, "--repeats") && v) o->repeats = atoi(argv[++i]);
        else if (!strcmp(a, "--max-batch") && v) o->max_batch = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--n") && v) o->n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--k") && v) o->k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--router-n") && v) o->router_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--max-rows") && v) o->max_rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--attn-ctx") && v) o->attn_ctx = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--llm-report") && v) o->llm_report = argv[++i];
        else if (!strcmp(a, "--cols") && v) o->cols = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--atomic-n") && v) o->atomic_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--atomic-repeats") && v) o->atomic_repeats = atoi(argv[++i]);
        else return -1;
    }
    if (o->repeats < 2) o->repeats = 2;
    if (o->atomic_repeats < 2) o->atomic_repeats = 2;
    if (o->atomic_n > 0x7fffffff) return -1;
    for (int i = 0; i < NDTYPES; i++)
        if (o->dtypes && dtype_wanted(o, DTYPES[i])) return 0;
    return o->dtypes ? -1 : 0;
}

int main(int argc, char **argv) {
    options o;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage_to(stdout, 0, argv[0]);
    if (parse(argc, argv, &o)) return usage_to(stderr, 2, argv[0]);
    if (o.list) {
        hx_device_list(stdout);
        return 0;
    }
    const double t0 = hx_now_s();
    study s = {0};
    s.clblast_ok = 1; /* until its probe says otherwise */
    if (hx_device_open(o.device, &s.dev)) return 1;
    cl_uint cus = 1;
    clGetDeviceInfo(s.dev.device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
    s.cus = cus ? cus : 1;
    s.tty = isatty(fileno(stderr));
    const int gpu = (s.dev.type & CL_DEVICE_TYPE_GPU) != 0;
    if (!o.n) o.n = o.quick ? 512 : 4096;
    if (!o.k) o.k = o.quick ? (gpu ? 4096 : 2048) : 4096;
    if (!o.max_batch) o.max_batch = o.quick ? 64 : 2048;
    if (!o.atomic_n) o.atomic_n = o.quick ? (size_t)1 << 20 : (size_t)1 << 22;
#ifdef BINV_HAVE_CLBLAST
    if (o.clblast_probe) {
        hx_device_close(&s.dev);
        return clblast_probe_run(&o);
    }
    if (family_wanted(&o, &FAMILIES[0])) s.clblast_ok = clblast_usable(&o, argv[0]);
#endif

    int rc = 1;
    binv_options bo = {sizeof bo, BINV_SCHEDULE_INVARIANT, NULL, BINV_PATH_PORTABLE};
    binv_status st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.inv);
    bo.schedule = BINV_SCHEDULE_ADAPTIVE;
    if (st == BINV_SUCCESS) st = binv_context_create(s.dev.context, s.dev.device, &bo, &s.adapt);
    if (st != BINV_SUCCESS) {
        fprintf(stderr, "error: binv_context_create: %s\n", binv_status_string(st));
        goto done;
    }
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", o.out, strerror(errno));
        goto done;
    }
    printf("binv-study on %s (%s, %zu compute units)%s\n", s.dev.name, s.dev.platform_name, s.cus,
           o.quick ? " --quick" : "");
    int ran[NFAMILIES] = {0};
    rc = 0;
    for (int i = 0; i < NFAMILIES && !rc; i++) {
        if (!FAMILIES[i].run || !family_wanted(&o, &FAMILIES[i])) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.csv", o.out, FAMILIES[i].id);
        FILE *csv = fopen(path, "w");
        if (!csv) fprintf(stderr, "warning: cannot write %s: %s\n", path, strerror(errno));
        rc = FAMILIES[i].run(&s, &o, csv);
        if (csv) fclose(csv);
        ran[i] = !rc;
    }
    const double seconds = hx_now_s() - t0;
    write_report(&s, &o, ran, seconds);
    plot(&s, &o, ran);
    printf("\nreport: %s/report.md (%.0f s)\n", o.out, seconds);
done:
    for (int m = 0; m < ATOMIC_METHODS; m++) free(s.atom[m].values);
    free(s.ser);
    binv_context_destroy(s.inv);
    binv_context_destroy(s.adapt);
    hx_device_close(&s.dev);
    return rc ? 1 : 0;
}
