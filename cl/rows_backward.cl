/* rows_backward.cl — backward of rmsnorm (binv_rmsnorm_backward).
 * Deterministic: no atomics, every sum in an order fixed by lengths alone.
 *
 * SCHEDULE (docs/schedules.md, "RMSNorm backward").  Row i of x, dy (f32,
 * widened from the dtype), weight w:
 *   g_j = w_j * dy_j
 *   S = sum of x_j^2 and D = sum of g_j * x_j, both with the forward's row
 *     schedule (cl/rows.cl): chunks of ROWS_CW = 1024 values at fixed
 *     boundaries; inside chunk c lane l (0..31) folds j = c*1024 + l + 32*q
 *     in increasing q from +0 (acc = fma(x, x, acc), resp. fma(g, x, acc));
 *     the 32 lane values by the halving tree s[l] = s[l] + s[l + h],
 *     h = 16, 8, 4, 2, 1; chunk values left to right, t = p_0; t = t + p_c.
 *   r = binv_rsqrt(S / cols + eps)        (the forward's r, bit for bit)
 *   k = ((r * r) * r) * (D / cols)
 *   dx_j = fma(-x_j, k, r * g_j)           (rounded to the dtype once)
 * dweight (f32), column j, rows cut into chunks of RB = 64 rows at fixed row
 * indices (chunk c = rows [c*RB, min(rows, (c+1)*RB))):
 *   S_c = 0; S_c = S_c + dy_ij * (x_ij * r_i) for i in the chunk in order
 *   dweight_j = (accumulate ? dweight_j : 0); dweight_j = dweight_j + S_c for c in order.
 *
 * Who computes what (none of it changes the arithmetic above):
 *   rmsbwd_rows      one work-group of 32*G items per row (G chunks side by
 *                    side): r_i and k_i into the workspace;
 *   rmsbwd_partials  one item per (column, row chunk): S_c into the workspace;
 *   rmsbwd_apply     one item per (column, row chunk): dx of its rows; the
 *                    items of row chunk 0 also combine dweight.  With one row
 *                    chunk (rows <= RB) rmsbwd_apply sums S_0 itself, in the
 *                    same loop and order, and rmsbwd_partials does not run.
 * Only the last kernel writes the outputs (all or nothing). */
#pragma OPENCL FP_CONTRACT OFF

#define ROWS_CW 1024 /* the forward's invariant chunk width (binv_rows_chunk_size) */
#define RB 64        /* row chunk of dweight (binv_rmsnorm_backward_rows_chunk) */

#ifndef G
#define G 4
#endif

/* Workspace: st[2*i] = r_i, st[2*i + 1] = k_i (i < rows), then at `poff`
 * the partials P[c * cols + j] = S_c of column j. */

__kernel __attribute__((reqd_work_group_size(32 * G, 1, 1)))
void rmsbwd_rows(uint rows, uint cols, __global const binv_t *x, ulong x_off, ulong ldx,
                 __global const binv_t *w, ulong w_off, float eps, __global const binv_t *dy,
                 ulong dy_off, ulong lddy, __global float *st) {
    __local float ssq[32 * G], sdot[32 * G];
    const uint row = get_group_id(1), tid = get_local_id(0), lane = tid % 32, grp = tid / 32;
    const ulong xo = x_off + (ulong)row * ldx, dyo = dy_off + (ulong)row * lddy;
    const uint nchunks = (cols + ROWS_CW - 1) / ROWS_CW;
    float S = 0.0f, D = 0.0f; /* running combinations (every item computes the same) */
    for (uint c0 = 0; c0 < nchunks; c0 += G) {
        const uint c = c0 + grp;
        const uint cs = c * ROWS_CW, ce = c < nchunks ? min(cols, cs + ROWS_CW) : cs;
        float aq = 0.0f, ad = 0.0f;
        for (uint j = cs + lane; j < ce; j += 32) {
            const float v = BINV_LOAD(x, xo + j);
            const float g = BINV_LOAD(w, w_off + j) * BINV_LOAD(dy, dyo + j);
            aq = fma(v, v, aq);
            ad = fma(g, v, ad);
        }
        __local float *q = ssq + grp * 32, *d = sdot + grp * 32;
        q[lane] = aq;
        d[lane] = ad;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint h = 16; h > 0; h >>= 1) {
            if (lane < h) {
                q[lane] = q[lane] + q[lane + h];
                d[lane] = d[lane] + d[lane + h];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        for (uint gi = 0; gi < G; gi++) {
            const uint cc = c0 + gi;
            if (cc < nchunks) {
                S = cc == 0 ? ssq[gi * 32] : S + ssq[gi * 32];
                D = cc == 0 ? sdot[gi * 32] : D + sdot[gi * 32];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the scratch is reused by the next round */
    }
    if (tid == 0) {
        const float r = binv_rsqrt(BINV_DIV(S, (float)cols) + eps);
        st[2 * (ulong)row] = r;
        st[2 * (ulong)row + 1] = ((r * r) * r) * BINV_DIV(D, (float)cols);
    }
}

/* S_c of column j over the rows of chunk c. */
inline float rmsbwd_chunk_sum(uint rows, uint j, uint c, __global const binv_t *x, ulong x_off,
                              ulong ldx, __global const binv_t *dy, ulong dy_off, ulong lddy,
                              __global const float *st) {
    const uint i1 = min(rows, (c + 1) * RB);
    float s = 0.0f;
    for (uint i = c * RB; i < i1; i++) {
        const float v = BINV_LOAD(x, x_off + (ulong)i * ldx + j);
        const float e = BINV_LOAD(dy, dy_off + (ulong)i * lddy + j);
        s = s + e * (v * st[2 * (ulong)i]);
    }
    return s;
}

__kernel void rmsbwd_partials(uint rows, uint cols, __global const binv_t *x, ulong x_off,
                              ulong ldx, __global const binv_t *dy, ulong dy_off, ulong lddy,
                              __global float *ws, ulong poff) {
    const uint j = get_global_id(0), c = get_global_id(1);
    if (j >= cols) return;
    ws[poff + (ulong)c * cols + j] = rmsbwd_chunk_sum(rows, j, c, x, x_off, ldx, dy, dy_off, lddy, ws);
}

/* dx of rows [c*RB, (c+1)*RB) in column j; items of chunk 0 also write
 * dweight_j from the nchunks partials in order (nchunks == 1: from S_0
 * summed here, as rmsbwd_chunk_sum does).  x or dy may be dx itself (in
 * place): each element is read and written by one item, read first. */
__kernel void rmsbwd_apply(uint rows, uint cols, uint nchunks, __global const binv_t *x,
                           ulong x_off, ulong ldx, __global const binv_t *w, ulong w_off,
                           __global const binv_t *dy, ulong dy_off, ulong lddy,
                           __global binv_t *dx, ulong dx_off, ulong lddx, __global float *dw,
                           ulong dw_off, uint accumulate, __global const float *ws, ulong poff) {
    const uint j = get_global_id(0), c = get_global_id(1);
    if (j >= cols) return;
    const float wj = BINV_LOAD(w, w_off + j);
    const uint i1 = min(rows, (c + 1) * RB);
    float s = 0.0f;
    for (uint i = c * RB; i < i1; i++) {
        const float v = BINV_LOAD(x, x_off + (ulong)i * ldx + j);
        const float e = BINV_LOAD(dy, dy_off + (ulong)i * lddy + j);
        const float r = ws[2 * (ulong)i], k = ws[2 * (ulong)i + 1];
        BINV_STORE(dx, dx_off + (ulong)i * lddx + j, fma(-v, k, r * (wj * e)));
        s = s + e * (v * r);
    }
    if (c == 0) {
        float t = accumulate ? dw[dw_off + j] : 0.0f;
        if (nchunks == 1) t = t + s;
        else
            for (uint cc = 0; cc < nchunks; cc++) t = t + ws[poff + (ulong)cc * cols + j];
        dw[dw_off + j] = t;
    }
}
