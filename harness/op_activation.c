/* activation: binv_swiglu and its reference. */
#include <math.h>

#include "harness.h"

binv_status hx_swiglu_binv(binv_context *ctx, cl_command_queue queue, binv_dtype dt, size_t rows,
                           size_t cols, cl_mem gate, cl_mem up, cl_mem y, size_t ld,
                           cl_event *event) {
    return binv_swiglu(ctx, queue, dt, rows, cols, gate, 0, ld, up, 0, ld, y, 0, ld, 0, NULL,
                       event);
}

double hx_swiglu_ref(double g, double u) { return g / (1 + exp(-g)) * u; }
