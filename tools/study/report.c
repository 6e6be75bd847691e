/* report.md: the summary over every family, the tables each family's
 * section uses, and the binv-llm section when one is given. */
#include <errno.h>
#include <string.h>

#include "study_tool.h"

/* ---- Report ------------------------------------------------------------------ */

size_t count_series(const study *s, const char *family, int impl, int varying) {
    size_t c = 0;
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && (impl < 0 || s->ser[i].impl == (impl_id)impl) &&
            (!varying || s->ser[i].distinct > 1))
            c++;
    return c;
}

void summary_table(FILE *f, const study *s, const char *family, const char *batch) {
    fprintf(f, "| op | shape | implementation | dtype | distinct outputs | max abs diff | max ulp "
               "diff | run-to-run deterministic | ms/call at %s = 1 | ms/call at the largest %s |\n"
               "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |\n",
            batch, batch);
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        fprintf(f, "| %s | %s | %s | %s | %s%d%s | %.3g | %.0f | %s | %.3f | %.3f |\n", r->op,
                r->shape, IMPL_NAME[r->impl], hx_dtype_name(r->dtype),
                r->distinct > 1 ? "**" : "", r->distinct, r->distinct > 1 ? "**" : "", r->max_abs,
                r->max_ulp, r->deterministic ? "yes" : "**no**", r->pts[0].ms,
                r->pts[r->npts - 1].ms);
    }
}

/* Max ulp of row 0 against batch 1, one column per batch size ("=" where the
 * bits are identical); with_width adds the adaptive rule's chunk widths. */
void batch_matrix(FILE *f, const study *s, const char *family, const char *batch,
                  int with_width) {
    const series *first = NULL;
    for (size_t i = 0; i < s->nser && !first; i++)
        if (!strcmp(s->ser[i].family, family)) first = &s->ser[i];
    if (!first) return;
    /* The widest sweep gives the columns (rows sweeps of very long rows may
     * be shorter: memory cap). */
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].npts > first->npts) first = &s->ser[i];
    fprintf(f, "| op | shape | implementation | dtype |");
    for (size_t j = 0; j < first->npts; j++) fprintf(f, " %s=%zu |", batch, first->pts[j].batch);
    fprintf(f, "\n| --- | --- | --- | --- |");
    for (size_t j = 0; j < first->npts; j++) fprintf(f, " ---: |");
    fprintf(f, "\n");
    char last[80] = "";
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        char key[80];
        snprintf(key, sizeof key, "%s %s", r->op, r->shape);
        if (with_width && strcmp(key, last)) {
            /* Once per op and shape: the chunk width the adaptive rule gives. */
            fprintf(f, "| %s | %s | *adaptive chunk width (rule)* | |", r->op, r->shape);
            for (size_t j = 0; j < first->npts; j++) {
                if (j < r->npts)
                    fprintf(f, " *%zu* |",
                            hx_rows_adaptive_width(r->pts[j].batch, r->cols, s->cus));
                else
                    fprintf(f, " |");
            }
            fprintf(f, "\n");
        }
        memcpy(last, key, sizeof last);
        fprintf(f, "| %s | %s | %s | %s |", r->op, r->shape, IMPL_NAME[r->impl],
                hx_dtype_name(r->dtype));
        for (size_t j = 0; j < first->npts; j++) {
            if (j >= r->npts) fprintf(f, " |");
            else if (r->pts[j].max_ulp == 0 && r->pts[j].max_abs == 0) fprintf(f, " = |");
            else fprintf(f, " %.0f |", r->pts[j].max_ulp);
        }
        fprintf(f, "\n");
    }
}

void section_tail(FILE *f, const study *s, const char *family, const char *batch, int with_width,
                  const char *caption, const char *files) {
    fprintf(f, "%s (`=`: bit-identical):\n\n", caption);
    batch_matrix(f, s, family, batch, with_width);
    fprintf(f, "\n%s\n\n![%s max diff](%s_maxdiff.png)\n![%s distinct](%s_distinct.png)\n\n", files,
            family, family, family, family);
}

/* Lists the series whose row 0 took more than one bit pattern. */
void varying_list(FILE *f, const study *s, const char *family) {
    int any = 0;
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family) || r->distinct < 2) continue;
        fprintf(f, "%s%s %s %s %s (%d patterns, up to %.0f ulp)", any ? "; " : "", r->op,
                r->shape, IMPL_NAME[r->impl], hx_dtype_name(r->dtype), r->distinct, r->max_ulp);
        any = 1;
    }
    if (!any) fprintf(f, "none");
}

void write_report(const study *s, const options *o, const int *ran, double seconds) {
    char path[4096];
    snprintf(path, sizeof path, "%s/report.md", o->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "warning: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    fprintf(f, "# binv-study report\n\nDevice: **%s** (%s), %zu compute units. libbinv-cl %s. "
               "Mode: %s; the run took %.0f s.\n\n",
            s->dev.name, s->dev.platform_name, s->cus, binv_version_string(),
            o->quick ? "`--quick`" : "full", seconds);
    fprintf(f, "Batch variance: the same request computed alone and inside batches of other "
               "requests, for each implementation — `distinct outputs` is the number of bit "
               "patterns the request's output took over the batch sizes (1 = batch-invariant "
               "here). Run-to-run nondeterminism: the same call on the same input repeated.\n\n");
    fprintf(f, "| family | implementation | series | series whose output varied with the batch | "
               "largest ulp diff | all run-to-run deterministic |\n"
               "| --- | --- | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < NFAMILIES; i++) {
        if (!ran[i] || !strcmp(FAMILIES[i].id, "atomics")) continue;
        for (int impl = 0; impl < IMPL_COUNT; impl++) {
            size_t n = 0, var = 0;
            double ulp = 0;
            int det = 1;
            for (size_t j = 0; j < s->nser; j++) {
                const series *r = &s->ser[j];
                if (strcmp(r->family, FAMILIES[i].id) || r->impl != (impl_id)impl) continue;
                n++;
                var += r->distinct > 1;
                if (r->max_ulp > ulp) ulp = r->max_ulp;
                det &= r->deterministic;
            }
            if (n)
                fprintf(f, "| %s | %s | %zu | %s%zu%s | %.0f | %s |\n", FAMILIES[i].title,
                        IMPL_NAME[impl], n, var ? "**" : "", var, var ? "**" : "", ulp,
                        det ? "yes" : "**no**");
        }
    }
    for (int i = 0; i < NFAMILIES; i++)
        if (!strcmp(FAMILIES[i].id, "atomics") && ran[i])
            fprintf(f, "| %s | atomic_cmpxchg / binv_row_sum invariant / adaptive | %d runs each "
                       "| – | – | distinct results: %d / %d / %d |\n",
                    FAMILIES[i].title, s->atom_repeats, s->atom[0].distinct, s->atom[1].distinct,
                    s->atom[2].distinct);
    fprintf(f, "\n");
    for (int i = 0; i < NFAMILIES; i++) {
        if (!FAMILIES[i].run) {
            fprintf(f, "## %s\n\nNot measured: %s.\n\n", FAMILIES[i].title, FAMILIES[i].pending);
            continue;
        }
        if (ran[i]) FAMILIES[i].report(f, s, o);
    }
    /* The end-to-end serving experiment: binv-llm --report FILE writes the
     * section; --llm-report FILE includes it here (docs/llm.md). */
    if (o->llm_report) {
        FILE *l = fopen(o->llm_report, "r");
        if (!l) {
            fprintf(stderr, "warning: cannot read %s: %s\n", o->llm_report, strerror(errno));
        } else {
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, l)) > 0) fwrite(buf, 1, n, f);
            fclose(l);
        }
    } else {
        fprintf(f, "## End to end (binv-llm)\n\nNot included in this run: `binv-llm --report "
                   "FILE` runs the serving experiment and `binv-study --llm-report FILE` includes "
                   "it here (docs/llm.md).\n");
    }
    fclose(f);
}
