/* rows.cl — row reductions: rmsnorm, add_rmsnorm, layernorm, softmax,
 * log_softmax, selected_log_softmax, row_sum, row_mean.  Batch-invariant and
 * portable.
 *
 * REDUCTION ORDER (docs/schedules.md; identical in every kernel below).
 * A row of `cols` values v_0 .. v_{cols-1} (f32, widened from the dtype; for
 * add_rmsnorm v_i = round_dtype(x_i + r_i)) is cut into chunks of cw values
 * at fixed boundaries (cw from the host: 1024 for the invariant schedule,
 * whatever the rows).  Inside chunk c:
 *   lane l (0..31) folds v[c*cw + l + 32*i], i = 0, 1, ... (those < cols), in
 *   increasing i, starting from the identity (+0 for sums, -inf for max);
 *   the 32 lane values are combined by the halving tree
 *   s[l] = s[l] (+) s[l + h] for h = 16, 8, 4, 2, 1; the chunk value is s[0].
 * Chunk values are combined left to right: t = p_0; t = t (+) p_c.
 *   sum of v        (row_sum, row_mean, layernorm's mean): fold acc = acc + v
 *   sum of v^2      (rmsnorm):                            fold acc = fma(v, v, acc)
 *   sum of (v-mu)^2 (layernorm's variance):               d = v - mu; acc = fma(d, d, acc)
 *   softmax: per chunk m_c = max (the same lanes and tree; max is exact) and
 *     s_c = sum of binv_exp(v - m_c) (0 if m_c = -inf); then M = max_c m_c and
 *     S = 0; S = fma(s_c, binv_exp(m_c - M), S) for c in order (chunks with
 *     m_c = -inf skipped).
 * Elementwise results:
 *   rmsnorm      y = (v * binv_rsqrt(S/cols + eps)) * w
 *   layernorm    mu = S1/cols; var = S2/cols; y = fma((v - mu) * binv_rsqrt(var + eps), g, b)
 *   softmax      y = binv_exp(v - M) / S
 *   log_softmax  y = (v - M) - binv_log(S)
 *   selected_log_softmax: out[row] = log_softmax's y at column ids[row], in f32
 *     (not rounded to the dtype); NaN for ids[row] >= cols
 *   row_sum = S, row_mean = S / cols (f32 results)
 * Who computes what: rows_fused runs one work-group per row through all of it;
 * rows_partials + rows_apply split a long row's chunks across work-groups,
 * with chunk values passed through a workspace.  Both compute every chunk
 * value with the same lanes and tree, and combine them in the same order. */

#define OP_SUM 0
#define OP_MEAN 1
#define OP_RMSNORM 2
#define OP_ADD_RMSNORM 3
#define OP_LAYERNORM 4
#define OP_SOFTMAX 5
#define OP_LOG_SOFTMAX 6
#define OP_SEL_LOG_SOFTMAX 7

/* OPC >= 0: the program is built for that one op (the host does so on GPUs,
 * where the runtime op switches cost issue slots and keep loads apart); the
 * kernels then ignore their op argument.  The arithmetic is the same. */
#ifndef OPC
#define OPC -1
#endif
#if OPC >= 0
#define ROWS_FIX_OP() (op = OPC)
#else
#define ROWS_FIX_OP() ((void)0)
#endif

/* selected_log_softmax is log_softmax up to the statistics (the same code
 * computes them: the bits are shared by construction); only what is written
 * differs.  Each kernel turns its op into (sel, log_softmax) once, after
 * ROWS_FIX_OP, so that every test of `op` below sees log_softmax. */
#define ROWS_SEL_OP()                                 \
    const int sel = op == OP_SEL_LOG_SOFTMAX;         \
    if (sel) op = OP_LOG_SOFTMAX

/* Chunks processed side by side by one work-group (work-group = 32 * G). */
#ifndef G
#define G 4
#endif

inline float binv_max(float a, float b) {
    if (isnan(a) || isnan(b)) return NAN;
    return a > b ? a : b;
}

/* Value i of the row (and, for add_rmsnorm, its pre-rounded sum). */
inline float rows_value(uint op, __global const binv_t *x, ulong xo, __global const binv_t *r,
                        ulong ro, uint i) {
    float v = BINV_LOAD(x, xo + i);
    if (op == OP_ADD_RMSNORM) v = binv_round_dtype(v + BINV_LOAD(r, ro + i));
    return v;
}

/* What a lane folds: 0 sum of v, 1 sum of v^2, 2 sum of (v-mu)^2, 3 max of v,
 * 4 sum of exp(v - mu). */
#define FOLD_SUM 0
#define FOLD_SQ 1
#define FOLD_DEV 2
#define FOLD_MAX 3
#define FOLD_EXP 4

/* One step of a lane's fold. */
inline float rows_fold(uint fold, float acc, float v, float mu) {
    if (fold == FOLD_SUM) return acc + v;
    if (fold == FOLD_SQ) return fma(v, v, acc);
    if (fold == FOLD_DEV) { const float d = v - mu; return fma(d, d, acc); }
    if (fold == FOLD_MAX) return binv_max(acc, v);
    return acc + binv_exp(v - mu);
}

/* The identity a lane starts from. */
inline float rows_fold_init(uint fold) { return fold == FOLD_MAX ? -INFINITY : 0.0f; }

/* The halving tree over the 32 lane values of group `grp`; every work-item
 * of the work-group must call it (barriers).  Returns the chunk value. */
inline float rows_tree(uint fold, float acc, uint lane, uint grp, __local float *scratch) {
    __local float *s = scratch + grp * 32;
    s[lane] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = 16; h > 0; h >>= 1) {
        if (lane < h) s[lane] = fold == FOLD_MAX ? binv_max(s[lane], s[lane + h]) : s[lane] + s[lane + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float out = s[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next call */
    return out;
}

/* A lane's fold over its values of a chunk [cs, ce) read from global memory
 * (ce = cs for a group with no chunk this round).  No barrier: the caller
 * passes the result to rows_tree. */
inline float rows_fold_global(uint fold, uint op, __global const binv_t *x, ulong xo,
                              __global const binv_t *r, ulong ro, uint cs, uint ce, uint lane,
                              float mu) {
    float acc = rows_fold_init(fold);
    if (fold == FOLD_EXP && mu == -INFINITY) return acc;
    for (uint i = cs + lane; i < ce; i += 32)
        acc = rows_fold(fold, acc, rows_value(op, x, xo, r, ro, i), mu);
    return acc;
}

/* A lane's values of a chunk [cs, ce) kept in registers: lane l holds
 * v[q] = value(cs + l + 32*q), q < 32 (chunks of at most 1024 values).
 * Constant trip counts and indices keep v[] in registers and let all loads
 * be in flight at once. */
#define ROWS_LV 32
inline void rows_load_lane(float *v, uint op, __global const binv_t *x, ulong xo,
                           __global const binv_t *r, ulong ro, uint cs, uint ce, uint lane) {
#pragma unroll
    for (uint q = 0; q < ROWS_LV; q++) {
        const uint i = cs + lane + 32 * q;
        v[q] = i < ce ? rows_value(op, x, xo, r, ro, i) : 0.0f;
    }
}

/* The lane's fold over its register values: the same order as
 * rows_fold_global. */
inline float rows_fold_lane(uint fold, const float *v, uint cs, uint ce, uint lane, float mu) {
    float acc = rows_fold_init(fold);
    if (fold == FOLD_EXP && mu == -INFINITY) return acc;
#pragma unroll
    for (uint q = 0; q < ROWS_LV; q++)
        if (cs + lane + 32 * q < ce) acc = rows_fold(fold, acc, v[q], mu);
    return acc;
}

/* Left-to-right combination of a row's chunk values.  The trip count is a
 * run-time value, so there is no unroll pragma: the compiler cannot honour one
 * (PoCL then prints "loop not unrolled" warnings on stderr) and its choice
 * does not change the order of the operations. */
inline float rows_combine_sum(__global const float *p, uint nchunks) {
    float t = p[0];
    for (uint c = 1; c < nchunks; c++) t = t + p[c];
    return t;
}
inline float rows_combine_max(__global const float *p, uint nchunks) {
    float t = p[0];
    for (uint c = 1; c < nchunks; c++) t = binv_max(t, p[c]);
    return t;
}
inline float rows_combine_exp(__global const float *pm, __global const float *ps, uint nchunks,
                              float M) {
    float S = 0.0f;
    for (uint c = 0; c < nchunks; c++)
        if (pm[c] != -INFINITY) S = fma(ps[c], binv_exp(pm[c] - M), S);
    return S;
}

/* Workspace layout: P[plane][row][chunk], planes:
 * 0: sum / sum of squares / max m_c, 1: sum of exps s_c / layernorm's deviations. */
#define PL(plane) (P + ((ulong)(plane) * rows + row) * nchunks)

/* Chunk values of chunks [cbeg, cend) of `row` for stage `stage`
 * (0: first statistic, and softmax's exps right after each chunk's max;
 * 1: layernorm's deviations). */
inline void rows_stage(uint stage, uint op, __global const binv_t *x, ulong xo,
                       __global const binv_t *r, ulong ro, uint rows, uint row, uint cols, uint cw,
                       uint nchunks, uint cbeg, uint cend, __global float *P, uint lane, uint grp,
                       __local float *scratch, int regs) {
    uint fold;
    float mu = 0.0f;
    if (stage == 0) {
        fold = (op == OP_RMSNORM || op == OP_ADD_RMSNORM) ? FOLD_SQ
             : (op == OP_SOFTMAX || op == OP_LOG_SOFTMAX) ? FOLD_MAX : FOLD_SUM;
    } else {
        fold = op == OP_LAYERNORM ? FOLD_DEV : FOLD_EXP;
        if (op == OP_LAYERNORM) mu = BINV_DIV(rows_combine_sum(PL(0), nchunks), (float)cols);
    }
    /* Softmax's s_c needs only its own chunk's m_c: it is computed in the
     * same pass.  Every work-item calls both trees of every round, from the
     * loop body itself: only the barrier-free folds depend on `inreg`
     * (PoCL's work-item loops cannot compile barriers inside the arms of a
     * branch, docs/portability.md). */
    const int exps = fold == FOLD_MAX;
    /* The chunk read once, into registers (the invariant width). */
    const int inreg = regs && cw <= 32 * ROWS_LV;
    for (uint c0 = cbeg; c0 < cend; c0 += G) {
        const uint c = c0 + grp;
        const int active = c < cend;
        float m = mu;
        if (fold == FOLD_EXP && active) m = PL(0)[c];
        const uint cs = c * cw, ce = active ? min(cols, cs + cw) : cs;
        float lv[ROWS_LV];
        if (inreg) rows_load_lane(lv, op, x, xo, r, ro, cs, ce, lane);
        float acc = inreg ? rows_fold_lane(fold, lv, cs, ce, lane, m)
                          : rows_fold_global(fold, op, x, xo, r, ro, cs, ce, lane, m);
        const float v = rows_tree(fold, acc, lane, grp, scratch);
        acc = !exps ? 0.0f
            : inreg ? rows_fold_lane(FOLD_EXP, lv, cs, ce, lane, v)
                    : rows_fold_global(FOLD_EXP, op, x, xo, r, ro, cs, ce, lane, v);
        const float e = rows_tree(FOLD_EXP, acc, lane, grp, scratch);
        if (active && lane == 0) PL(stage)[c] = v;
        if (exps && active && lane == 0) PL(1)[c] = e;
    }
}

/* The row statistics the elementwise results need, from the chunk values:
 * norms: a0 = 1/sigma (layernorm: a0 = mu, a1 = 1/sigma); softmax: a0 = M,
 * a1 = S (log_softmax: log S). */
inline void rows_stats(uint op, uint rows, uint row, uint cols, uint nchunks, float eps,
                       __global float *P, float *a0, float *a1) {
    *a0 = 0.0f;
    *a1 = 0.0f;
    if (op == OP_RMSNORM || op == OP_ADD_RMSNORM) {
        *a0 = binv_rsqrt(BINV_DIV(rows_combine_sum(PL(0), nchunks), (float)cols) + eps);
    } else if (op == OP_LAYERNORM) {
        *a0 = BINV_DIV(rows_combine_sum(PL(0), nchunks), (float)cols);
        *a1 = binv_rsqrt(BINV_DIV(rows_combine_sum(PL(1), nchunks), (float)cols) + eps);
    } else if (op == OP_SOFTMAX || op == OP_LOG_SOFTMAX) {
        *a0 = rows_combine_max(PL(0), nchunks);
        *a1 = rows_combine_exp(PL(0), PL(1), nchunks, *a0);
        if (op == OP_LOG_SOFTMAX) *a1 = binv_log(*a1);
    }
}

/* The elementwise result for value v at column i. */
inline float rows_out(uint op, float v, float a0, float a1, __global const binv_t *w, ulong wo,
                      __global const binv_t *b, ulong bo, uint i) {
    if (op == OP_RMSNORM || op == OP_ADD_RMSNORM) return (v * a0) * BINV_LOAD(w, wo + i);
    if (op == OP_LAYERNORM) return fma((v - a0) * a1, BINV_LOAD(w, wo + i), BINV_LOAD(b, bo + i));
    if (op == OP_SOFTMAX) return BINV_DIV(binv_exp(v - a0), a1);
    return (v - a0) - a1;
}

/* selected_log_softmax's result for a row: rows_out of log_softmax at column
 * id, read from x as rows_value reads it (op is log_softmax here); NaN when id
 * is not a column (nothing is read then). */
inline float rows_selected(uint op, __global const binv_t *x, ulong xo, __global const binv_t *r,
                           ulong ro, __global const binv_t *w, ulong wo, __global const binv_t *b,
                           ulong bo, uint cols, float a0, float a1, uint id) {
    if (id >= cols) return NAN;
    return rows_out(op, rows_value(op, x, xo, r, ro, id), a0, a1, w, wo, b, bo, id);
}

/* Elementwise results for values [ibeg, iend) of `row`. */
inline void rows_apply_range(uint op, __global binv_t *x, ulong xo, __global const binv_t *r,
                             ulong ro, __global const binv_t *w, ulong wo,
                             __global const binv_t *b, ulong bo, float eps, __global binv_t *y,
                             ulong yo, __global float *out, uint rows, uint row, uint cols,
                             uint nchunks, __global float *P, uint ibeg, uint iend, uint tid,
                             uint nthreads, __local float *st, int sel,
                             __global const uint *ids) {
    /* The statistics once per work-group (a long row has many chunks to
     * combine), shared through local memory.  The barrier is reached by every
     * work-item whatever the op (PoCL miscompiles barriers behind op-dependent
     * branches). */
    const int vec = op == OP_SUM || op == OP_MEAN;
    if (tid == 0 && !vec) {
        float s0, s1;
        rows_stats(op, rows, row, cols, nchunks, eps, P, &s0, &s1);
        st[0] = s0;
        st[1] = s1;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (vec) {
        if (tid == 0 && ibeg == 0) { /* one work-group per row writes the f32 result */
            const float S = rows_combine_sum(PL(0), nchunks);
            out[row] = op == OP_SUM ? S : BINV_DIV(S, (float)cols);
        }
        return;
    }
    const float a0 = st[0], a1 = st[1];
    if (sel) { /* one f32 per row, from the work-group that owns column 0 */
        if (tid == 0 && ibeg == 0)
            out[row] = rows_selected(op, x, xo, r, ro, w, wo, b, bo, cols, a0, a1, ids[row]);
        return;
    }
    for (uint i = ibeg + tid; i < iend; i += nthreads) {
        const float v = rows_value(op, x, xo, r, ro, i);
        if (op == OP_ADD_RMSNORM) BINV_STORE(x, xo + i, v);
        BINV_STORE(y, yo + i, rows_out(op, v, a0, a1, w, wo, b, bo, i));
    }
}

#define ROWS_ARGS                                                                              \
    uint op, uint rows, uint cols, uint cw, uint nchunks, __global binv_t *x, ulong x_off,     \
        ulong ldx, __global const binv_t *r, ulong r_off, ulong ldr, __global const binv_t *w, \
        ulong w_off, __global const binv_t *b, ulong b_off, float eps, __global binv_t *y,     \
        ulong y_off, ulong ldy, __global float *out, ulong out_off, __global float *P,   \
        __global const uint *ids, ulong ids_off

/* One work-group per row: every stage, then the elementwise results. */
__kernel __attribute__((reqd_work_group_size(32 * G, 1, 1)))
void rows_fused(ROWS_ARGS) {
    ROWS_FIX_OP();
    ROWS_SEL_OP();
    __local float scratch[32 * G];
    const uint row = get_group_id(1), tid = get_local_id(0), lane = tid % 32, grp = tid / 32;
    const ulong xo = x_off + (ulong)row * ldx, ro = r_off + (ulong)row * ldr;
    /* Layernorm's deviations need the row mean: a second pass. */
    for (uint stage = 0; stage < (op == OP_LAYERNORM ? 2u : 1u); stage++) {
        rows_stage(stage, op, x, xo, r, ro, rows, row, cols, cw, nchunks, 0, nchunks, P, lane,
                   grp, scratch, 0);
        barrier(CLK_GLOBAL_MEM_FENCE); /* chunk values visible to the whole group */
    }
    rows_apply_range(op, x, xo, r, ro, w, w_off, b, b_off, eps, y, y_off + (ulong)row * ldy,
                     out + out_off, rows, row, cols, nchunks, P, 0, cols, tid, 32 * G, scratch,
                     sel, ids + ids_off);
}

/* Split rows: work-group (x, row) computes chunks [x*G, x*G + G) of stage
 * `stage` into the workspace. */
__kernel __attribute__((reqd_work_group_size(32 * G, 1, 1)))
void rows_partials(uint stage, ROWS_ARGS) {
    ROWS_FIX_OP();
    ROWS_SEL_OP();
    (void)sel;
    __local float scratch[32 * G];
    const uint row = get_group_id(1), tid = get_local_id(0), lane = tid % 32, grp = tid / 32;
    const uint cbeg = get_group_id(0) * G;
    const ulong xo = x_off + (ulong)row * ldx, ro = r_off + (ulong)row * ldr;
    rows_stage(stage, op, x, xo, r, ro, rows, row, cols, cw, nchunks, cbeg, min(nchunks, cbeg + G),
               P, lane, grp, scratch, 1);
}

/* Split rows: work-group (x, row) writes the results of chunks
 * [x*G, x*G + G) (row_sum/row_mean: work-group 0 writes the row's result). */
__kernel __attribute__((reqd_work_group_size(32 * G, 1, 1)))
void rows_apply(ROWS_ARGS) {
    ROWS_FIX_OP();
    ROWS_SEL_OP();
    const uint row = get_group_id(1), tid = get_local_id(0);
    const uint cbeg = get_group_id(0) * G;
    const ulong xo = x_off + (ulong)row * ldx, ro = r_off + (ulong)row * ldr;
    const uint ibeg = cbeg * cw, iend = min(cols, (cbeg + G) * cw);
    __local float st[2];
    rows_apply_range(op, x, xo, r, ro, w, w_off, b, b_off, eps, y, y_off + (ulong)row * ldy,
                     out + out_off, rows, row, cols, nchunks, P, ibeg, iend, tid, 32 * G, st, sel,
                     ids + ids_off);
}

/* One work-group per row with every chunk in registers: group grp (of G)
 * owns chunk grp, lane l holds its <= 32 values v[grp*cw + l + 32*i].  For
 * rows of at most G chunks of cw <= 1024 (host-checked).  The row is read
 * once; folds, trees and combination are those of rows_fused. */
__kernel __attribute__((reqd_work_group_size(32 * G, 1, 1)))
void rows_fused_cached(ROWS_ARGS) {
    ROWS_FIX_OP();
    ROWS_SEL_OP();
    __local float scratch[32 * G];
    const uint row = get_group_id(1), tid = get_local_id(0), lane = tid % 32, grp = tid / 32;
    const ulong xo = x_off + (ulong)row * ldx, ro = r_off + (ulong)row * ldr;
    const uint cs = grp * cw, ce = min(cols, cs + cw);
    float v[ROWS_LV];
    rows_load_lane(v, op, x, xo, r, ro, cs, ce, lane);
    const int two = op == OP_LAYERNORM || op == OP_SOFTMAX || op == OP_LOG_SOFTMAX;
    const uint fold0 = (op == OP_RMSNORM || op == OP_ADD_RMSNORM) ? FOLD_SQ
                     : (op == OP_SOFTMAX || op == OP_LOG_SOFTMAX) ? FOLD_MAX : FOLD_SUM;
    for (uint stage = 0; stage < (two ? 2u : 1u); stage++) {
        const uint fold = stage == 0 ? fold0 : op == OP_LAYERNORM ? FOLD_DEV : FOLD_EXP;
        float mu = 0.0f;
        if (stage == 1 && op == OP_LAYERNORM) mu = BINV_DIV(rows_combine_sum(PL(0), nchunks), (float)cols);
        if (stage == 1 && op != OP_LAYERNORM && grp < nchunks) mu = PL(0)[grp];
        const float acc = grp < nchunks ? rows_fold_lane(fold, v, cs, ce, lane, mu)
                                        : rows_fold_init(fold);
        const float cv = rows_tree(fold, acc, lane, grp, scratch);
        if (grp < nchunks && lane == 0) PL(stage)[grp] = cv;
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
    __global binv_t *yr = y + y_off + (ulong)row * ldy;
    if (op == OP_SUM || op == OP_MEAN) {
        if (tid == 0) {
            const float S = rows_combine_sum(PL(0), nchunks);
            out[out_off + row] = op == OP_SUM ? S : BINV_DIV(S, (float)cols);
        }
        return;
    }
    float a0, a1;
    rows_stats(op, rows, row, cols, nchunks, eps, P, &a0, &a1);
    if (sel) { /* the value is reloaded: the same load and widening as v[q] */
        if (tid == 0)
            out[out_off + row] = rows_selected(op, x, xo, r, ro, w, w_off, b, b_off, cols, a0, a1,
                                               ids[ids_off + row]);
        return;
    }
#pragma unroll
    for (uint q = 0; q < 32; q++) {
        const uint i = cs + lane + 32 * q;
        if (i < ce) {
            if (op == OP_ADD_RMSNORM) BINV_STORE(x, xo + i, v[q]);
            BINV_STORE(yr, i, rows_out(op, v[q], a0, a1, w, w_off, b, b_off, i));
        }
    }
}
