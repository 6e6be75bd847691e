/* binv-bench's output: CSV files, the GEMM table, the invariance summaries
 * and the GFLOP/s-vs-m plots. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "binv_bench_plot_gp.h"

void csv_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int open_csv(FILE **f, const char *path, const char *header) {
    *f = fopen(path, "w");
    if (!*f) return fail("cannot open %s for writing: %s", path, strerror(errno));
    fputs(header, *f);
    return 0;
}

int close_csv(FILE **f, const char *path) {
    int bad = ferror(*f);
    bad |= fclose(*f) != 0;
    *f = NULL;
    if (bad) return fail("writing %s failed", path);
    printf("\nCSV: %s\n", path);
    return 0;
}

void write_csv_row(bench *b, const result *r) {
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

void print_table_header(void) {
    printf("%-15s %-5s %5s %6s %6s %6s %10s %9s %8s %6s %8s %8s %5s\n", "impl", "dtype", "m", "n",
           "k", "calls", "ms", "GFLOP/s", "GB/s", "%BW", "vs-clbl", "err", "check");
}

void print_row(const result *r) {
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

void print_invariance_summary(const bench *b) {
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

void print_rows_summary(const bench *b) {
    printf("\nRows batch invariance: row 0 of x is the same for every rows; is row 0 of the "
           "output bitwise the same for every rows?\n");
    printf("%-11s %-5s %7s %-9s %5s  %-9s %s\n", "op", "dtype", "cols", "schedule", "#rows",
           "invariant", "distinct row-0 bit patterns");
    int broken = 0;
    for (size_t i = 0; i < b->nrinv; i++) {
        const inv_summary *s = &b->rinv[i];
        printf("%-11s %-5s %7zu %-9s %5d  %-9s %d\n", hx_rows_ops[s->op].name,
               hx_dtype_name(s->dtype),
               s->n, sched_names[s->impl], s->nm, s->distinct == 1 ? "yes" : "NO", s->distinct);
        if (s->impl == SCHED_INVARIANT && s->distinct != 1) broken = 1;
    }
    if (broken)
        printf("WARNING: the invariant schedule produced different row-0 bits at different row "
               "counts: the library's batch-invariance contract is broken on this device.\n");
    /* The decode-time target: one row of a 152064-wide vocabulary. */
    for (size_t i = 0; i < b->nrres; i++) {
        const rows_result *r = &b->rres[i];
        if (r->op == HX_SOFTMAX && r->rows == 1 && r->cols == 152064)
            printf("softmax 1 x 152064 %s %s: %.2f us per call (target <= 15 us on an H100; "
                   "launch floor %.2f us per kernel)\n",
                   hx_dtype_name(r->dtype), sched_names[r->sched], r->us, b->launch_us);
    }
}

int write_plots(const bench *b) {
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
