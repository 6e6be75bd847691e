/* The PNG plots: a gnuplot script (plot.gp) written from the series, run
 * when gnuplot is installed. */
#include <stdlib.h>
#include <string.h>

#include "study_tool.h"

static const int DT_POINT[] = {7, 5, 9}; /* f32 circle, f16 square, bf16 triangle */
static const int DT_DASH[] = {1, 2, 3};

static int dtype_index(binv_dtype dt) {
    return dt == BINV_DTYPE_F32 ? 0 : dt == BINV_DTYPE_F16 ? 1 : 2;
}

static int family_has(const study *s, const char *family, int impl, int d) {
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].impl == (impl_id)impl &&
            dtype_index(s->ser[i].dtype) == d)
            return 1;
    return 0;
}

void plot_maxdiff(FILE *g, const study *s, const char *family, const char *csv,
                  const char *png, const char *title, const char *xlabel,
                  const panel *p, int np, int diff_col) {
    const int ncol = np + 1 < 3 ? np + 1 : 3, nrow = (np + 1 + ncol - 1) / ncol;
    fprintf(g, "set terminal pngcairo size %d,%d noenhanced\nset output '%s'\n"
               "set multiplot layout %d,%d title '%s'\n",
            460 * ncol + 40, 340 * nrow + 40, png, nrow, ncol, title);
    fprintf(g, "set logscale x 2\nset logscale y\nset grid\nunset key\nset xlabel '%s'\n"
               "set ylabel 'max |diff| from batch 1'\nset yrange [3e-17:10]\n"
               "set ytics 1e-16, 100 format '%%.0e'\nset ytics add ('identical' FLOOR)\n"
               "set mytics 1\n",
            xlabel);
    for (int k = 0; k < np; k++) {
        fprintf(g, "set title '%s %s'\nplot ", p[k].op, p[k].shape);
        int first = 1;
        for (size_t i = 0; i < s->nser; i++) {
            const series *r = &s->ser[i];
            if (strcmp(r->family, family) || strcmp(r->op, p[k].op) || strcmp(r->shape, p[k].shape))
                continue;
            int d = dtype_index(r->dtype);
            fprintf(g, "%s'%s' using (strcol(1) eq '%s' && strcol(2) eq '%s' && strcol(3) eq '%s' "
                       "&& $5 == %zu ? $4 : 1/0):($%d > 0 ? $%d : FLOOR) with linespoints "
                       "lc rgb '%s' pt %d dt %d ps 1.2 notitle",
                    first ? "" : ", \\\n     ", csv, p[k].op, IMPL_NAME[r->impl],
                    hx_dtype_name(r->dtype), p[k].key5, diff_col, diff_col,
                    IMPL_COLOR[r->impl], DT_POINT[d], DT_DASH[d]);
            first = 0;
        }
        fprintf(g, "%s\n", first ? "NaN notitle" : "");
    }
    /* The legend cell. */
    fprintf(g, "unset border\nunset tics\nunset xlabel\nunset ylabel\nunset title\nunset grid\n"
               "unset logscale\nset xrange [0:1]\nset yrange [0:1]\n"
               "set key center center font ',12' spacing 1.4\nplot ");
    int first = 1;
    for (int impl = 0; impl < IMPL_COUNT; impl++)
        for (int d = 0; d < NDTYPES; d++) {
            if (!family_has(s, family, impl, d)) continue;
            fprintf(g, "%sNaN with linespoints lc rgb '%s' pt %d dt %d ps 1.2 title '%s %s'",
                    first ? "" : ", ", IMPL_COLOR[impl], DT_POINT[d], DT_DASH[d], IMPL_NAME[impl],
                    hx_dtype_name(DTYPES[d]));
            first = 0;
        }
    fprintf(g, "%s\nunset multiplot\nset border\nset tics\nset xrange [*:*]\nset yrange [*:*]\n"
               "set ytics autofreq format '%%g'\nset mytics default\nunset key\nset key\n",
            first ? "NaN notitle" : "");
}

void plot_distinct(FILE *g, const study *s, const char *family, const char *png,
                   const char *title) {
    fprintf(g, "$%s << EOD\n", family);
    char last[80] = "", tics[4096] = "";
    double x = -1, gstart = 0;
    for (size_t i = 0; i < s->nser; i++) {
        const series *r = &s->ser[i];
        if (strcmp(r->family, family)) continue;
        char key[80];
        snprintf(key, sizeof key, "%s %s", r->op, r->shape);
        if (strcmp(key, last)) { /* a new group: one empty slot between groups */
            if (*last) append(tics, sizeof tics, "%s'%s' %.1f", *tics ? ", " : "", last,
                              (gstart + x) / 2);
            x += *last ? 2 : 1;
            gstart = x;
            memcpy(last, key, sizeof last);
        } else {
            x += 1;
        }
        fprintf(g, "%.1f %d %d %d\n", x, r->distinct, (int)r->impl, dtype_index(r->dtype));
    }
    if (*last) append(tics, sizeof tics, "%s'%s' %.1f", *tics ? ", " : "", last, (gstart + x) / 2);
    fprintf(g, "EOD\n");
    int top = 1;
    for (size_t i = 0; i < s->nser; i++)
        if (!strcmp(s->ser[i].family, family) && s->ser[i].distinct > top) top = s->ser[i].distinct;
    fprintf(g, "set output '%s'\nset title '%s'\nunset logscale\n"
               "set style fill solid 0.85 border -1\nset boxwidth 0.8\n"
               "set xtics (%s) nomirror rotate by -20 left\n"
               "set ylabel 'distinct bit patterns of row 0'\nset yrange [0:%d.5]\nset ytics 1\n"
               "set grid ytics\n"
               "set xrange [-1:%.1f]\nset key outside right font ',10'\nset xlabel ''\n",
            png, title, tics, top, x + 1);
    fprintf(g, "set datafile separator whitespace\nplot ");
    int first = 1;
    for (int impl = 0; impl < IMPL_COUNT; impl++)
        for (int d = 0; d < NDTYPES; d++) {
            int present = 0;
            for (size_t i = 0; i < s->nser && !present; i++)
                present = !strcmp(s->ser[i].family, family) && s->ser[i].impl == (impl_id)impl &&
                          dtype_index(s->ser[i].dtype) == d;
            if (!present) continue;
            /* dtype by fill pattern density: solid f32, lighter f16, lightest bf16 */
            fprintf(g, "%s$%s using ($3 == %d && $4 == %d ? $1 : 1/0):2 with boxes lc rgb '%s' "
                       "fs solid %.2f title '%s %s'",
                    first ? "" : ", \\\n     ", family, impl, d, IMPL_COLOR[impl],
                    d == 0 ? 0.9 : d == 1 ? 0.55 : 0.25, IMPL_NAME[impl],
                    hx_dtype_name(DTYPES[d]));
            first = 0;
        }
    if (first) fprintf(g, "NaN notitle");
    fprintf(g, "\nset datafile separator ','\nunset xtics\nset xtics\nset yrange [*:*]\n"
               "set xrange [*:*]\nset xtics norotate\nset ytics autofreq\n");
}

void plot(const study *s, const options *o, const int *ran) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("(gnuplot not found: no PNG plots; the CSVs have the data)\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/plot.gp", o->out);
    FILE *g = fopen(path, "w");
    if (!g) return;
    fprintf(g, "# Written by binv-study: gnuplot %s\nset datafile separator ','\nFLOOR = 1e-16\n",
            path);
    for (int i = 0; i < NFAMILIES; i++)
        if (ran[i] && FAMILIES[i].plot) {
            fprintf(g, "set datafile separator ','\n");
            FAMILIES[i].plot(g, s, o);
            fprintf(g, "set datafile separator whitespace\n");
        }
    fclose(g);
    char cmd[8300];
    /* gnuplot's warnings (e.g. an empty y range when nothing varied) are noise here. */
    snprintf(cmd, sizeof cmd, "gnuplot '%s' > '%s/plot.log' 2>&1", path, o->out);
    if (system(cmd) == 0) printf("plots: %s/*.png\n", o->out);
    else printf("warning: gnuplot failed; see %s/plot.log\n", o->out);
}
