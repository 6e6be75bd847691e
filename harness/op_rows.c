/* rows: the row reductions (rmsnorm, softmax, log_softmax, layernorm,
 * add_rmsnorm, row_sum, row_mean, selected_log_softmax): traffic, the binv
 * call, the reference. */
#include <math.h>
#include <string.h>

#include "harness.h"

const hx_rows_info hx_rows_ops[HX_ROWS_COUNT] = {
    [HX_RMSNORM] = {"rmsnorm", 1, 1, 2, 1, 0},
    [HX_SOFTMAX] = {"softmax", 1, 1, 2, 0, 0},
    [HX_LOG_SOFTMAX] = {"log_softmax", 1, 1, 2, 0, 0},
    [HX_LAYERNORM] = {"layernorm", 1, 1, 2, 2, 0},
    [HX_ADD_RMSNORM] = {"add_rmsnorm", 2, 2, 3, 1, 0},
    [HX_ROW_SUM] = {"row_sum", 1, 0, 1, 0, 1},
    [HX_ROW_MEAN] = {"row_mean", 1, 0, 1, 0, 1},
    [HX_SELECTED_LOG_SOFTMAX] = {"selected_log_softmax", 1, 0, 1, 0, 1},
};

int hx_rows_selects(hx_rows_op op) { return op == HX_SELECTED_LOG_SOFTMAX; }

int hx_rows_find(const char *s, size_t len) {
    for (int i = 0; i < HX_ROWS_COUNT; i++)
        if (strlen(hx_rows_ops[i].name) == len && !strncmp(s, hx_rows_ops[i].name, len)) return i;
    return -1;
}

double hx_rows_traffic(hx_rows_op op, binv_dtype dt, size_t rows, size_t cols) {
    const hx_rows_info *o = &hx_rows_ops[op];
    double esz = (double)hx_dtype_size(dt);
    return esz * ((double)(o->reads + o->writes) * (double)rows * (double)cols +
                  (double)o->vectors * (double)cols) +
           (o->f32_out ? 4.0 * (double)rows : 0.0) +
           (hx_rows_selects(op) ? 4.0 * (double)rows : 0.0); /* the ids */
}

binv_status hx_rows_binv(binv_context *ctx, cl_command_queue q, const hx_rows *p,
                         cl_event *event) {
    const binv_dtype dt = p->dt;
    const size_t rows = p->rows, n = p->cols;
    switch (p->op) {
    case HX_RMSNORM:
        return binv_rmsnorm(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->w, p->w_off, p->eps,
                            p->y, p->y_off, p->ldy, 0, NULL, event);
    case HX_ADD_RMSNORM:
        return binv_add_rmsnorm(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->r, p->r_off,
                                p->ldr, p->w, p->w_off, p->eps, p->y, p->y_off, p->ldy, 0, NULL,
                                event);
    case HX_LAYERNORM:
        return binv_layernorm(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->w, p->w_off, p->b,
                              p->b_off, p->eps, p->y, p->y_off, p->ldy, 0, NULL, event);
    case HX_SOFTMAX:
        return binv_softmax(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->y, p->y_off, p->ldy,
                            0, NULL, event);
    case HX_LOG_SOFTMAX:
        return binv_log_softmax(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->y, p->y_off,
                                p->ldy, 0, NULL, event);
    case HX_ROW_SUM:
        return binv_row_sum(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->y, p->y_off, 0, NULL,
                            event);
    case HX_ROW_MEAN:
        return binv_row_mean(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->y, p->y_off, 0, NULL,
                             event);
    case HX_SELECTED_LOG_SOFTMAX:
        return binv_selected_log_softmax(ctx, q, dt, rows, n, p->x, p->x_off, p->ldx, p->ids,
                                         p->ids_off, p->y, p->y_off, 0, NULL, event);
    default:
        return BINV_ERROR_INVALID_VALUE;
    }
}

double hx_rows_ref(hx_rows_op op, binv_dtype dt, size_t cols, double eps, const void *x,
                   const void *r, const void *w, const void *b, double *ref, double *v) {
    for (size_t j = 0; j < cols; j++) {
        float f = hx_load(dt, x, j);
        if (op == HX_ADD_RMSNORM) { /* the sum in f32, rounded to the dtype, as stored */
            unsigned char tmp[4];
            hx_store(dt, tmp, 0, f + hx_load(dt, r, j));
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
    if (op == HX_ROW_SUM || op == HX_ROW_MEAN) {
        ref[0] = op == HX_ROW_SUM ? s1 : s1 / (double)cols;
        return op == HX_ROW_SUM ? sabs : sabs / (double)cols;
    }
    double mu = s1 / (double)cols, var = 0, se = 0;
    for (size_t j = 0; j < cols; j++) {
        var += (v[j] - mu) * (v[j] - mu);
        se += exp(v[j] - mx);
    }
    var /= (double)cols;
    const double rms = 1.0 / sqrt(s2 / (double)cols + eps);
    const double isd = 1.0 / sqrt(var + eps);
    for (size_t j = 0; j < cols; j++) {
        double o;
        if (op == HX_RMSNORM || op == HX_ADD_RMSNORM) o = v[j] * rms * hx_load(dt, w, j);
        else if (op == HX_LAYERNORM) o = (v[j] - mu) * isd * hx_load(dt, w, j) + hx_load(dt, b, j);
        else if (op == HX_SOFTMAX) o = exp(v[j] - mx) / se;
        else o = v[j] - mx - log(se);
        ref[j] = o;
        if (fabs(o) > scale) scale = fabs(o);
    }
    return scale;
}

size_t hx_rows_adaptive_width(size_t rows, size_t cols, size_t cus) {
    const size_t cw = 1024; /* docs/schedules.md: at least one chunk per 1024 values */
    if (rows == 0 || cols == 0) return cw;
    const size_t want = 8 * cus; /* work-groups that fill the device */
    const size_t min_pieces = (cols + cw - 1) / cw;
    size_t pieces = rows >= want ? min_pieces : (want + rows - 1) / rows;
    if (pieces < min_pieces) pieces = min_pieces;
    if (pieces > 32 * min_pieces) pieces = 32 * min_pieces;
    size_t w = (cols + pieces - 1) / pieces;
    return (w + 31) / 32 * 32;
}

double hx_sum_ref(const float *x, size_t n) {
    double s = 0.0, c = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], t = s + v;
        c += fabs(s) >= fabs(v) ? (s - t) + v : (v - t) + s;
        s = t;
    }
    return s + c;
}
