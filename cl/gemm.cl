/* gemm.cl — C = alpha * op(A) * op(B) + beta * C, batch-invariant.
 *
 * REDUCTION ORDER (docs/schedules.md; identical in every kernel below):
 *   The K axis is cut into chunks of kc elements at fixed boundaries
 *   [c*kc, min(k, (c+1)*kc)), c = 0 .. nchunks-1 (kc from the host: a function
 *   of k and dtype only for the invariant schedule).
 *   Inside chunk c:   p_c = 0;  for p in chunk, increasing:  p_c = fma(a_ip, b_pj, p_c)
 *   Across chunks:    t = p_0;  for c = 1 .. nchunks-1:  t = t + p_c      (k = 0: t = 0)
 *   Epilogue:         v = alpha * t;  if (beta != 0) v = fma(beta, c_ij, v);  store v
 * Nothing else is added, reordered or fused.  The kernels differ only in who
 * computes which (i, j, chunk): gemm_tiled walks all chunks of a C tile in
 * registers; gemm_tiled with one chunk per work-group, gemm_skinny and
 * gemm_stream (small m) write chunk partials p_c to a workspace, which is
 * combined in chunk order either by gemm_reduce (a second launch) or, in the
 * same launch, by the last work-group to finish a tile (binv_gemm_arrive).
 * All give the same bits for the same (i, j).
 *
 * Indexing: op(A)(i, p) = A[a_off + i*sai + p*sap], op(B)(p, j) =
 * B[b_off + p*sbp + j*sbj], C(i, j) = C[c_off + i*ldc + j].  The strides
 * encode the transposes; they only change which loads are coalesced.
 * Partials: P[(c*m + i)*n + j], f32.
 */

/* Tile shape of gemm_tiled (set by the host per device; never changes bits). */
#ifndef TGLOB
#define TGLOB 0
#endif
#ifndef BM
#define BM 32
#endif
#ifndef BN
#define BN 32
#endif
#ifndef BK
#define BK 16
#endif
#ifndef RM
#define RM 4
#endif
#ifndef RN
#define RN 4
#endif
#define TX (BN / RN)
#define TY (BM / RM)
#define NT (TX * TY)
#define APAD (BM + 4) /* row stride of As: keeps float4 alignment, spreads banks */
#define BPAD (BN + 4)

/* gemm_skinny: SN columns per work-group (one per work-item), SMR rows per
 * work-group, SK elements of K staged per step. */
#ifndef SN
#define SN 64
#endif
#ifndef SMR
#define SMR 4
#endif
#ifndef SK
#define SK 32
#endif

inline void binv_gemm_store(__global binv_t *C, ulong idx, float t, float alpha, float beta) {
    float v = alpha * t;
    if (beta != 0.0f) v = fma(beta, BINV_LOAD(C, idx), v);
    BINV_STORE(C, idx, v);
}

/* t for output (i, j) from the chunk partials P[(c*m + i)*n + j]: p_0, then
 * + p_c in chunk order (k = 0: +0).  Volatile loads: in the one-launch
 * split-K the partials were written by other work-groups during this kernel,
 * so they must come from the device-coherent level, never a stale L1 line. */
inline float binv_gemm_combine(__global const volatile float *P, uint m, uint n, uint nchunks,
                               uint i, uint j) {
    float t = 0.0f;
    if (nchunks > 0) {
        t = P[(ulong)i * n + j];
        for (uint c = 1; c < nchunks; c++) t = t + P[((ulong)c * m + i) * n + j];
    }
    return t;
}

/* A fence that orders this work-item's global memory accesses for every
 * work-group of the device.  OpenCL 1.2's mem_fence only promises that
 * within the work-group (NVIDIA compiles it to membar.cta), so on NVIDIA the
 * host sets BINV_FENCE=2 for the PTX device-scope fence; BINV_FENCE=1 (CPU
 * devices, where mem_fence is a full fence) uses mem_fence.  Elsewhere the
 * host never enables the one-launch combine. */
#ifndef BINV_FENCE
#define BINV_FENCE 1
#endif
#if BINV_FENCE == 2
#define BINV_DEVICE_FENCE() asm volatile("membar.gl;" ::: "memory")
#else
#define BINV_DEVICE_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#endif

/* One-launch split-K.  A work-group that has written its chunk partials of
 * output tile `tile` to P counts itself in cnt[tile]; the one that brings
 * the count to nchunks (whichever chunk it computed, in whatever order the
 * device ran the work-groups) returns 1 and then combines the tile with
 * binv_gemm_tile_combine, in chunk order: arrival order decides who adds,
 * never what is added in which order.  It resets the count to 0, so the
 * counters are 0 again when the kernel ends.  Every work-item fences its own
 * stores device-wide before the barrier (the CUDA threadfence-reduction
 * pattern), and the last group fences after the count, before its reads.
 * Called by every work-item whether or not `fuse` is set (then it returns 0):
 * PoCL miscompiles barriers reached only under a branch. */
inline int binv_gemm_arrive(uint fuse, volatile __global uint *cnt, uint tile, uint nchunks,
                            uint lid, __local uint *flag) {
    BINV_DEVICE_FENCE();
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        uint done = 0;
        if (fuse) {
            done = atomic_inc(cnt + tile) + 1u;
            if (done == nchunks) atomic_xchg(cnt + tile, 0u);
        }
        *flag = fuse && done == nchunks;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int last = *flag != 0u;
    if (last) BINV_DEVICE_FENCE(); /* the count before the partials */
    return last;
}

/* The last work-group's part: rows [i0, i0+mi) x columns [j0, j0+nj) of C,
 * nth work-items sharing them. */
inline void binv_gemm_tile_combine(__global const volatile float *P, uint m, uint n, uint nchunks,
                                   uint i0, uint mi, uint j0, uint nj, uint lid, uint nth,
                                   float alpha, float beta, __global binv_t *C, ulong c_off,
                                   ulong ldc) {
    for (uint e = lid; e < mi * nj; e += nth) {
        const uint i = i0 + e / nj, j = j0 + e % nj;
        binv_gemm_store(C, c_off + (ulong)i * ldc + j, binv_gemm_combine(P, m, n, nchunks, i, j),
                        alpha, beta);
    }
}

/* Elements of the A and B tiles each work-item stages per step: scalar
 * loads (ALD, BLD) or BINV_VW-wide vector loads (AVL, BVL vectors). */
#define ALD ((BM * BK + NT - 1) / NT)
#define BLD ((BN * BK + NT - 1) / NT)
#define AVL ((BM * BK / BINV_VW + NT - 1) / NT)
#define BVL ((BN * BK / BINV_VW + NT - 1) / NT)
#define PALEN (ALD > AVL * BINV_VW ? ALD : AVL * BINV_VW)
#define PBLEN (BLD > BVL * BINV_VW ? BLD : BVL * BINV_VW)

/* Loads step [t0, t0+len) of one operand's tile into registers: TO rows of
 * the operand from o0 (op(A) rows or op(B) columns; `on` of them exist) by
 * BK values of K; element (o, p) at X[off + o*so + p*sk].  0 outside the
 * matrix or past len.  Work-items walk the contiguous axis so that loads
 * coalesce.  vec: the operand is K-contiguous with 16-byte aligned rows and
 * steps, so whole vectors are loaded (a ragged end by element); nvl vectors
 * (else nl elements) per work-item. */
inline void binv_tile_fetch(float *dst, uint tid, uint NTH, uint BK_, uint TO, uint nl, uint nvl,
                            uint o0, uint on, uint t0, uint len, uint vec,
                            __global const binv_t *X, ulong off, ulong so, ulong sk) {
    if (vec) {
        for (uint l = 0; l < nvl; l++) {
            const uint e = tid + l * NTH;
            const uint kk = (e % (BK_ / BINV_VW)) * BINV_VW, oo = e / (BK_ / BINV_VW);
            const ulong row = off + (ulong)(o0 + oo) * so + t0;
            const int in = e < TO * BK_ / BINV_VW && o0 + oo < on;
            float *v = dst + l * BINV_VW;
            if (in && kk + BINV_VW <= len) {
                binv_load_vec(X, row + kk, v);
            } else {
                for (int q = 0; q < BINV_VW; q++)
                    v[q] = (in && kk + q < len) ? BINV_LOAD(X, row + kk + q) : 0.0f;
            }
        }
    } else {
        for (uint l = 0; l < nl; l++) {
            const uint e = tid + l * NTH;
            uint oo, kk;
            if (sk == 1) { kk = e % BK_; oo = e / BK_; } else { oo = e % TO; kk = e / TO; }
            dst[l] = (e < TO * BK_ && o0 + oo < on && kk < len)
                         ? BINV_LOAD(X, off + (o0 + oo) * so + (t0 + kk) * sk) : 0.0f;
        }
    }
}

/* Stores what binv_tile_fetch loaded into the local tile S[kk * sk_ + o * so_]. */
inline void binv_tile_store(__local float *S, uint sk_, uint so_, const float *src, uint tid,
                            uint NTH, uint BK_, uint TO, uint nl, uint nvl, uint vec, ulong sk) {
    if (vec) {
        for (uint l = 0; l < nvl; l++) {
            const uint e = tid + l * NTH;
            const uint kk = (e % (BK_ / BINV_VW)) * BINV_VW, oo = e / (BK_ / BINV_VW);
            if (e < TO * BK_ / BINV_VW)
                for (int q = 0; q < BINV_VW; q++) S[(kk + q) * sk_ + oo * so_] = src[l * BINV_VW + q];
        }
    } else {
        for (uint l = 0; l < nl; l++) {
            const uint e = tid + l * NTH;
            uint oo, kk;
            if (sk == 1) { kk = e % BK_; oo = e / BK_; } else { oo = e % TO; kk = e / TO; }
            if (e < TO * BK_) S[kk * sk_ + oo * so_] = src[l];
        }
    }
}

/* Both operands of gemm_tiled: A's rows i0.., B's columns j0.. */
#define BINV_TILED_FETCH(t0_, len_)                                                             \
    {                                                                                           \
        binv_tile_fetch(pa, tid, NT, BK, BM, ALD, AVL, i0, m, (t0_), (len_), vec & 1u, A, a_off,     \
                        sai, sap);                                                              \
        binv_tile_fetch(pb, tid, NT, BK, BN, BLD, BVL, j0, n, (t0_), (len_), vec & 2u, B, b_off,     \
                        sbj, sbp);                                                              \
    }
#define BINV_TILED_STORE(buf)                                                                   \
    {                                                                                           \
        binv_tile_store((__local float *)As4 + (buf) * BK * APAD, APAD, 1, pa, tid, NT, BK, BM,  \
                        ALD, AVL, vec & 1u, sap);                                               \
        binv_tile_store((__local float *)Bs4 + (buf) * BK * BPAD, BPAD, 1, pb, tid, NT, BK, BN,  \
                        BLD, BVL, vec & 2u, sbp);                                               \
    }

/* The work-item's accumulators: acc for the chunk in progress, and the
 * running total t of finished chunks in registers (tot) or, with TGLOB, in
 * the f32 workspace P[i*n + j] (mode 0 only), which frees RM*RN registers for
 * occupancy; TOT(r, q) is t after the last chunk is folded in. */
#if TGLOB
#define TOT(r, q) acc[r][q]
#define BINV_TILED_ACC                                                                \
    float acc[RM][RN];                                                                \
    BINV_UNROLL                                                                        \
    for (int r = 0; r < RM; r++)                                                      \
        for (int q = 0; q < RN; q++) acc[r][q] = 0.0f;
#else
#define TOT(r, q) tot[r][q]
#define BINV_TILED_ACC                                                                \
    float acc[RM][RN], tot[RM][RN];                                                   \
    BINV_UNROLL                                                                        \
    for (int r = 0; r < RM; r++)                                                      \
        for (int q = 0; q < RN; q++) { tot[r][q] = 0.0f; acc[r][q] = 0.0f; }
#endif

/* Runs `body` for each of the work-item's outputs (r, q) inside C: row i,
 * column j. */
#define BINV_TILED_OUTPUTS(body)                                                      \
    BINV_UNROLL                                                                        \
    for (int r = 0; r < RM; r++) {                                                    \
        const uint i = i0 + ty * 4 + (r / 4) * TY * 4 + (r % 4);                      \
        if (i >= m) continue;                                                         \
        BINV_UNROLL                                                                    \
        for (int q = 0; q < RN; q++) {                                                \
            const uint j = j0 + tx * 4 + (q / 4) * TX * 4 + (q % 4);                  \
            if (j < n) body                                                           \
        }                                                                             \
    }

/* One k of gemm_tiled's (and gemm_tiled_nt's) step: the work-item's RM x RN
 * accumulators take one fma each from the local tiles Ab, Bb (k-major).  Rows
 * of this work-item: ty*4 + r4*TY*4 + 0..3; columns likewise. */
#define BINV_TILED_STEP(kk)                                                           \
    {                                                                                 \
        float a[RM], b[RN];                                                           \
        BINV_UNROLL                                                                    \
        for (int r4 = 0; r4 < RM / 4; r4++) {                                         \
            float4 v = Ab[((kk) * APAD + ty * 4 + r4 * TY * 4) / 4];                  \
            a[4 * r4] = v.x; a[4 * r4 + 1] = v.y; a[4 * r4 + 2] = v.z; a[4 * r4 + 3] = v.w; \
        }                                                                             \
        BINV_UNROLL                                                                    \
        for (int q4 = 0; q4 < RN / 4; q4++) {                                         \
            float4 v = Bb[((kk) * BPAD + tx * 4 + q4 * TX * 4) / 4];                  \
            b[4 * q4] = v.x; b[4 * q4 + 1] = v.y; b[4 * q4 + 2] = v.z; b[4 * q4 + 3] = v.w; \
        }                                                                             \
        BINV_UNROLL                                                                    \
        for (int r = 0; r < RM; r++)                                                  \
            for (int q = 0; q < RN; q++) acc[r][q] = fma(a[r], b[q], acc[r][q]);      \
    }

/* A chunk is complete: t = p_0 (first), then t = t + p_c, in chunk order;
 * more: chunks of this work-group follow.  With TGLOB t lives in P[i*n + j]
 * (each work-item reads back only what it wrote itself) and the last chunk's
 * sum stays in acc; otherwise in tot. */
#if TGLOB
#define BINV_TILED_FOLD(first, more)                                                  \
    {                                                                                 \
        BINV_UNROLL                                                                    \
        for (int r = 0; r < RM; r++) {                                                \
            const uint i = i0 + ty * 4 + (r / 4) * TY * 4 + (r % 4);                  \
            BINV_UNROLL                                                                \
            for (int q = 0; q < RN; q++) {                                            \
                const uint j = j0 + tx * 4 + (q / 4) * TX * 4 + (q % 4);              \
                if (i < m && j < n && !(first)) acc[r][q] = P[(ulong)i * n + j] + acc[r][q]; \
                if (i < m && j < n && (more)) P[(ulong)i * n + j] = acc[r][q];        \
                if (more) acc[r][q] = 0.0f;                                           \
            }                                                                         \
        }                                                                             \
    }
#else
#define BINV_TILED_FOLD(first, more)                                                  \
    {                                                                                 \
        BINV_UNROLL                                                                    \
        for (int r = 0; r < RM; r++)                                                  \
            for (int q = 0; q < RN; q++) {                                            \
                tot[r][q] = (first) ? acc[r][q] : tot[r][q] + acc[r][q];              \
                acc[r][q] = 0.0f;                                                     \
            }                                                                         \
    }
#endif

/* mode 0: each work-group walks every chunk of its BM x BN tile of C and
 *         writes C through the epilogue.
 * mode 1: work-group (x, y, c) computes only chunk c's partial of its tile and
 *         writes it to P (split-K along the fixed chunk boundaries);
 *         gemm_reduce combines them (a 128 x 128 tile is too much for one
 *         work-group to combine at the end: slower on the H100).
 * The next step's tiles are fetched into registers while this step computes
 * (software pipelining); that changes when data arrives, not any arithmetic. */
__kernel __attribute__((reqd_work_group_size(TX, TY, 1)))
void gemm_tiled(uint mode, uint m, uint n, uint k, uint kc, uint nchunks, float alpha, float beta,
                __global const binv_t *A, ulong a_off, ulong sai, ulong sap,
                __global const binv_t *B, ulong b_off, ulong sbp, ulong sbj, uint vec,
                __global binv_t *C, ulong c_off, ulong ldc, __global float *P) {
    /* Two buffers per operand: step s computes from buffer s%2 while step
     * s+1 is stored into the other, so one barrier per step suffices. */
    __local float4 As4[2 * BK * APAD / 4];
    __local float4 Bs4[2 * BK * BPAD / 4];
    const uint tx = get_local_id(0), ty = get_local_id(1);
    const uint tid = ty * TX + tx;
    const uint i0 = get_group_id(1) * BM, j0 = get_group_id(0) * BN;
    const uint c_begin = mode ? get_group_id(2) : 0;
    const uint c_end = mode ? c_begin + 1 : nchunks;

    BINV_TILED_ACC
    float pa[PALEN], pb[PBLEN];

    /* Step state: chunk c, step start t0, chunk end k1; buffer buf. */
    uint c = c_begin, t0 = c_begin * kc, k1 = min(k, t0 + kc), buf = 0;
    if (c < c_end) {
        BINV_TILED_FETCH(t0, min((uint)BK, k1 - t0))
        BINV_TILED_STORE(0)
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    while (c < c_end) {
        const uint len = min((uint)BK, k1 - t0);
        /* Where the next step is, and its loads issued before this compute. */
        uint nc = c, nt0 = t0 + BK, nk1 = k1;
        if (nt0 >= k1) {
            nc = c + 1;
            nt0 = nc * kc;
            nk1 = min(k, nt0 + kc);
        }
        if (nc < c_end)
            BINV_TILED_FETCH(nt0, min((uint)BK, nk1 - nt0))
        __local const float4 *Ab = As4 + buf * (BK * APAD / 4);
        __local const float4 *Bb = Bs4 + buf * (BK * BPAD / 4);
        if (len == BK) {
#pragma unroll
            for (uint kk = 0; kk < BK; kk++) BINV_TILED_STEP(kk)
        } else {
            for (uint kk = 0; kk < len; kk++) BINV_TILED_STEP(kk)
        }
        if (nc < c_end) BINV_TILED_STORE(buf ^ 1u)
        barrier(CLK_LOCAL_MEM_FENCE);
        buf ^= 1u;
        if (nc != c) {
            BINV_TILED_FOLD(c == c_begin, nc < c_end)
        }
        c = nc;
        t0 = nt0;
        k1 = nk1;
    }

    BINV_TILED_OUTPUTS({
        if (mode)
            P[((ulong)c_begin * m + i) * n + j] = TOT(r, q);
        else
            binv_gemm_store(C, c_off + (ulong)i * ldc + j, TOT(r, q), alpha, beta);
    })
}

/* gemm_tiled_nt: gemm_tiled (mode 0) for the layout of C = A * W^T with both
 * operands K-contiguous (sap = sbp = 1) and every vector whole and 16-byte
 * aligned (vec = 3 on the host's test: offsets, row strides, k, kc and BK
 * multiples of BINV_VW), kc a multiple of BK.  Same tiles, same steps, same
 * running totals as gemm_tiled, so the same fma chain per chunk and the same
 * chunk additions (the REDUCTION ORDER above); what differs is the bookkeeping:
 * each work-item copies fixed vectors (rows r0 + l * TNR of both tiles, k
 * offset kq) with no layout or bounds branches, and rows past m or n are
 * clamped to the last row (their results are never stored), so it needs fewer
 * registers.  Its arguments are gemm_tiled's. */
#define TNV (BK / BINV_VW)   /* vectors per tile row and step */
#define TNR (NT / TNV)       /* rows between a work-item's vectors */
#define TNA (BM / TNR)       /* vectors of A per work-item and step */
#define TNB (BN / TNR)
#ifndef TNU
#define TNU BK /* unroll of the step's k loop (code generation only) */
#endif
#define TNT_PRAGMA(x) _Pragma(#x)
#define TNT_UNROLL(u) TNT_PRAGMA(unroll u)
__kernel __attribute__((reqd_work_group_size(TX, TY, 1)))
void gemm_tiled_nt(uint mode, uint m, uint n, uint k, uint kc, uint nchunks, float alpha,
                   float beta, __global const binv_t *A, ulong a_off, ulong sai, ulong sap,
                   __global const binv_t *B, ulong b_off, ulong sbp, ulong sbj, uint vec,
                   __global binv_t *C, ulong c_off, ulong ldc, __global float *P) {
    __local float4 As4[2 * BK * APAD / 4];
    __local float4 Bs4[2 * BK * BPAD / 4];
    const uint tx = get_local_id(0), ty = get_local_id(1);
    const uint tid = ty * TX + tx;
    const uint i0 = get_group_id(1) * BM, j0 = get_group_id(0) * BN;
    const uint kq = (tid % TNV) * BINV_VW, r0 = tid / TNV;
    /* Row starts of this work-item's vectors (clamped inside the matrix). */
    ulong ra[TNA], rb[TNB];
    BINV_UNROLL
    for (int l = 0; l < TNA; l++) ra[l] = a_off + (ulong)min(i0 + r0 + l * TNR, m - 1) * sai + kq;
    BINV_UNROLL
    for (int l = 0; l < TNB; l++) rb[l] = b_off + (ulong)min(j0 + r0 + l * TNR, n - 1) * sbj + kq;
    BINV_TILED_ACC
    float va[TNA * BINV_VW], vb[TNB * BINV_VW];
    /* Vectors past k (the last step of a k that BK does not divide) are
     * zeros that no fma reads. */
#define TNT_FETCH(t0_)                                                                        \
    {                                                                                         \
        const int in_ = (t0_) + kq < k;                                                       \
        BINV_UNROLL                                                                            \
        for (int l = 0; l < TNA; l++)                                                         \
            if (in_) binv_load_vec(A, ra[l] + (t0_), va + l * BINV_VW);                       \
            else for (int q = 0; q < BINV_VW; q++) va[l * BINV_VW + q] = 0.0f;               \
        BINV_UNROLL                                                                            \
        for (int l = 0; l < TNB; l++)                                                         \
            if (in_) binv_load_vec(B, rb[l] + (t0_), vb + l * BINV_VW);                       \
            else for (int q = 0; q < BINV_VW; q++) vb[l * BINV_VW + q] = 0.0f;               \
    }
#define TNT_STORE(buf)                                                                        \
    {                                                                                         \
        __local float *as_ = (__local float *)As4 + (buf) * BK * APAD;                        \
        __local float *bs_ = (__local float *)Bs4 + (buf) * BK * BPAD;                        \
        BINV_UNROLL                                                                            \
        for (int l = 0; l < TNA; l++)                                                         \
            for (int q = 0; q < BINV_VW; q++) as_[(kq + q) * APAD + r0 + l * TNR] = va[l * BINV_VW + q]; \
        BINV_UNROLL                                                                            \
        for (int l = 0; l < TNB; l++)                                                         \
            for (int q = 0; q < BINV_VW; q++) bs_[(kq + q) * BPAD + r0 + l * TNR] = vb[l * BINV_VW + q]; \
    }
    if (k > 0) {
        TNT_FETCH(0u)
        TNT_STORE(0)
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint buf = 0;
    for (uint t0 = 0; t0 < k; t0 += BK) {
        const uint nt0 = t0 + BK, len = min((uint)BK, k - t0);
        if (nt0 < k) TNT_FETCH(nt0)
        __local const float4 *Ab = As4 + buf * (BK * APAD / 4);
        __local const float4 *Bb = Bs4 + buf * (BK * BPAD / 4);
        if (len == BK) {
            TNT_UNROLL(TNU)
            for (uint kk = 0; kk < BK; kk++) BINV_TILED_STEP(kk)
        } else {
            for (uint kk = 0; kk < len; kk++) BINV_TILED_STEP(kk)
        }
        if (nt0 < k) TNT_STORE(buf ^ 1u)
        barrier(CLK_LOCAL_MEM_FENCE);
        buf ^= 1u;
        if (nt0 % kc == 0 || nt0 >= k) {
            /* Chunk t0 / kc is complete. */
            BINV_TILED_FOLD(t0 < kc, nt0 < k)
        }
    }
#undef TNT_FETCH
#undef TNT_STORE
    BINV_TILED_OUTPUTS({ binv_gemm_store(C, c_off + (ulong)i * ldc + j, TOT(r, q), alpha, beta); })
}

/* Values of B and A each work-item of gemm_skinny stages per step. */
#define SBL SK
#define SAL ((SMR * SK + SN - 1) / SN)
#define SBVL (SK / BINV_VW)
/* Small m: work-group (row block y, column block x, chunk c) computes chunk
 * c's partial for SN columns and up to SMR rows, one column per work-item,
 * staging B through local memory so that the weight stream is read coalesced
 * whatever its layout.  The next step is fetched into registers while this
 * one computes.  Row blocks are the fastest-varying group index, so the
 * groups that read the same weights run together (one HBM pass at m > SMR).
 * fuse: the tile's last group combines the partials (binv_gemm_arrive). */
__kernel __attribute__((reqd_work_group_size(SN, 1, 1)))
void gemm_skinny(uint m, uint n, uint k, uint kc, uint nchunks,
                 __global const binv_t *A, ulong a_off, ulong sai, ulong sap,
                 __global const binv_t *B, ulong b_off, ulong sbp, ulong sbj, uint bvec,
                 __global float *P, uint fuse, __global uint *cnt, float alpha, float beta,
                 __global binv_t *C, ulong c_off, ulong ldc) {
    __local float Bs[SN * (SK + 1)]; /* Bs[jj][kk], padded against bank conflicts */
    __local float As[SMR * SK];
    __local uint last;
    const uint lid = get_local_id(0);
    const uint r0 = get_group_id(0) * SMR, j0 = get_group_id(1) * SN, c = get_group_id(2);
    const uint mr = min((uint)SMR, m - r0); /* rows of this work-group */
    const uint k0 = c * kc;
    const uint k1 = min(k, k0 + kc);
    float acc[SMR];
    BINV_UNROLL
    for (int r = 0; r < SMR; r++) acc[r] = 0.0f;
    float pb[SBL], pa[SAL];
#define BINV_SKINNY_FETCH(t0_, len_)                                                          \
    {                                                                                         \
        binv_tile_fetch(pb, lid, SN, SK, SN, SBL, SBVL, j0, n, (t0_), (len_), bvec, B, b_off,  \
                        sbj, sbp);                                                            \
        binv_tile_fetch(pa, lid, SN, SK, SMR, SAL, 0, r0, m, (t0_), (len_), 0, A, a_off, sai,  \
                        sap);                                                                 \
    }
    BINV_SKINNY_FETCH(k0, min((uint)SK, k1 - k0))
    for (uint t0 = k0; t0 < k1; t0 += SK) {
        const uint len = min((uint)SK, k1 - t0);
        binv_tile_store(Bs, 1, SK + 1, pb, lid, SN, SK, SN, SBL, SBVL, bvec, sbp);
        binv_tile_store(As, 1, SK, pa, lid, SN, SK, SMR, SAL, 0, 0, sap);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t0 + SK < k1) BINV_SKINNY_FETCH(t0 + SK, min((uint)SK, k1 - t0 - SK))
#define BINV_SKINNY_STEP(kk)                                                   \
    {                                                                          \
        const float b = Bs[lid * (SK + 1) + (kk)];                             \
        BINV_UNROLL                                                             \
        for (uint r = 0; r < SMR; r++)                                         \
            if (r < mr) acc[r] = fma(As[r * SK + (kk)], b, acc[r]);            \
    }
        if (len == SK) {
#pragma unroll 8
            for (uint kk = 0; kk < SK; kk++) BINV_SKINNY_STEP(kk)
        } else {
            for (uint kk = 0; kk < len; kk++) BINV_SKINNY_STEP(kk)
        }
#undef BINV_SKINNY_STEP
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const uint j = j0 + lid;
    if (j < n) {
        BINV_UNROLL
        for (int r = 0; r < SMR; r++)
            if (r < mr) P[((ulong)c * m + r0 + r) * n + j] = acc[r];
    }
    if (binv_gemm_arrive(fuse, cnt, get_group_id(1) * get_num_groups(0) + get_group_id(0),
                         nchunks, lid, &last))
        binv_gemm_tile_combine(P, m, n, nchunks, r0, mr, j0, min((uint)SN, n - j0), lid, SN,
                               alpha, beta, C, c_off, ldc);
}

/* gemm_stream: small m when B is K-contiguous with 16-byte aligned rows and
 * k, the offsets and the chunk length are multiples of the vector width (the
 * LLM weight layout), so every 16-byte vector lies inside one chunk.
 * Work-group (row block, column block, chunk c): TN columns, NC per
 * work-item (columns lid, lid + TW, ...), up to TR rows of A.  Each step
 * stages TV 16-byte vectors of K (TK values; 128 bytes by default) of the
 * TN weight rows, raw: loaded coalesced (TV consecutive work-items read one
 * row's vectors), stored unconverted in local memory with 16 bytes of padding per
 * row, so that a column's vectors are read back without bank conflicts;
 * double-buffered (one barrier per step), the next step loaded into
 * registers while this one computes.  Each work-item then runs its columns'
 * fma chains in p order (the schedule), widening each vector in registers;
 * with NC > 1 every value of A read from local memory feeds NC chains.
 * Same partials as gemm_skinny. */
#ifndef TN
#define TN 128
#endif
#ifndef TR
#define TR 4
#endif
#ifndef NC
#define NC 1
#endif
#define TW (TN / NC)         /* work-items */
#ifndef TV
#define TV 8                 /* 16-byte vectors of each row per step */
#endif
#define TK (TV * BINV_VW)    /* K values per step */
#define TPITCH (TV + 1)      /* row pitch of the staged tile, in vectors */
#define TAL ((TR * TK + TW - 1) / TW) /* values of A each work-item stages */

/* One staged vector widened to BINV_VW floats (as binv_load_vec). */
inline void binv_widen_local(__local const uint4 *v, float *out) {
#if BINV_DTYPE == 1
    const float4 f = *(__local const float4 *)v;
    out[0] = f.s0; out[1] = f.s1; out[2] = f.s2; out[3] = f.s3;
#elif BINV_DTYPE == 2
    const float8 f = vload_half8(0, (__local const half *)v);
    out[0] = f.s0; out[1] = f.s1; out[2] = f.s2; out[3] = f.s3;
    out[4] = f.s4; out[5] = f.s5; out[6] = f.s6; out[7] = f.s7;
#else
    const uint4 u = *v;
    out[0] = as_float(u.s0 << 16); out[1] = as_float(u.s0 & 0xffff0000u);
    out[2] = as_float(u.s1 << 16); out[3] = as_float(u.s1 & 0xffff0000u);
    out[4] = as_float(u.s2 << 16); out[5] = as_float(u.s2 & 0xffff0000u);
    out[6] = as_float(u.s3 << 16); out[7] = as_float(u.s3 & 0xffff0000u);
#endif
}

__kernel __attribute__((reqd_work_group_size(TW, 1, 1)))
void gemm_stream(uint m, uint n, uint k, uint kc, uint nchunks,
                 __global const binv_t *A, ulong a_off, ulong sai, ulong sap,
                 __global const binv_t *B, ulong b_off, ulong sbp_unused, ulong ldb,
                 uint bvec_unused, __global float *P,
                 uint fuse, __global uint *cnt, float alpha, float beta,
                 __global binv_t *C, ulong c_off, ulong ldc) {
    /* Same arguments as gemm_skinny (one host launcher); B's K stride is 1
     * and its vector alignment holds by this kernel's preconditions. */
    __local uint4 Bs[2][TN * TPITCH];
    __local float4 As4[2][TR * TK / 4]; /* float4: A is read back 4 values per load */
    __local uint last;
    const uint lid = get_local_id(0);
    const uint r0 = get_group_id(0) * TR, j0 = get_group_id(1) * TN, c = get_group_id(2);
    const uint mr = min((uint)TR, m - r0);
    const uint k0 = c * kc, k1 = min(k, k0 + kc);
    uint4 pb[TV * NC];
    float pa[TAL];
    /* Step [t0, t0 + TK) ∩ chunk into registers: vector e = lid + l*TW is
     * row e / TV, vector e % TV; zero past the chunk or past n (not read). */
#define BINV_STREAM_FETCH(t0_)                                                             \
    {                                                                                      \
        BINV_UNROLL                                                                        \
        for (uint l = 0; l < TV * NC; l++) {                                               \
            const uint e = lid + l * TW, jj = e / TV, q = e % TV;                          \
            const uint p = (t0_) + q * BINV_VW;                                            \
            pb[l] = (j0 + jj < n && p < k1)                                                \
                        ? *(__global const uint4 *)(B + b_off + (ulong)(j0 + jj) * ldb + p) \
                        : (uint4)(0u);                                                     \
        }                                                                                  \
        BINV_UNROLL                                                                        \
        for (uint l = 0; l < TAL; l++) {                                                   \
            const uint e = lid + l * TW, r = e / TK, p = (t0_) + e % TK;                   \
            pa[l] = (e < TR * TK && r < mr && p < k1)                                      \
                        ? BINV_LOAD(A, a_off + (r0 + r) * sai + (ulong)p * sap) : 0.0f;    \
        }                                                                                  \
    }
#define BINV_STREAM_STORE(buf)                                                             \
    {                                                                                      \
        BINV_UNROLL                                                                        \
        for (uint l = 0; l < TV * NC; l++) {                                               \
            const uint e = lid + l * TW;                                                   \
            Bs[buf][(e / TV) * TPITCH + e % TV] = pb[l];                                   \
        }                                                                                  \
        BINV_UNROLL                                                                        \
        for (uint l = 0; l < TAL; l++) {                                                   \
            const uint e = lid + l * TW;                                                   \
            if (e < TR * TK) ((__local float *)As4[buf])[e] = pa[l];                       \
        }                                                                                  \
    }
    float acc[NC][TR];
    BINV_UNROLL
    for (int cc = 0; cc < NC; cc++)
        BINV_UNROLL
        for (int r = 0; r < TR; r++) acc[cc][r] = 0.0f;
    uint buf = 0;
    if (k0 < k1) {
        BINV_STREAM_FETCH(k0)
        BINV_STREAM_STORE(0)
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint t0 = k0; t0 < k1; t0 += TK) {
        if (t0 + TK < k1) BINV_STREAM_FETCH(t0 + TK)
        const uint nv = min((uint)TV, (k1 - t0) / BINV_VW); /* whole vectors: k1 - t0 % VW == 0 */
        __local const uint4 *bv = Bs[buf] + lid * TPITCH;
        __local const float4 *av = As4[buf];
        /* Row r's BINV_VW values of A for vector q come as float4 loads (one
         * local load per 4 fmas, not per fma: at m = 8-16 the scalar loads
         * bounded the kernel); each chain still takes its fmas in p order. */
#define BINV_STREAM_STEP(q)                                                                \
    {                                                                                      \
        float b[NC][BINV_VW];                                                              \
        BINV_UNROLL                                                                        \
        for (int cc = 0; cc < NC; cc++) binv_widen_local(bv + cc * TW * TPITCH + (q), b[cc]); \
        BINV_UNROLL                                                                        \
        for (int r = 0; r < TR; r++) {                                                     \
            float a[BINV_VW];                                                              \
            BINV_UNROLL                                                                    \
            for (int h = 0; h < BINV_VW / 4; h++) {                                        \
                const float4 v = av[(r * TK + (q) * BINV_VW) / 4 + h];                     \
                a[4 * h] = v.x; a[4 * h + 1] = v.y; a[4 * h + 2] = v.z; a[4 * h + 3] = v.w; \
            }                                                                              \
            BINV_UNROLL                                                                    \
            for (int e = 0; e < BINV_VW; e++)                                              \
                BINV_UNROLL                                                                \
                for (int cc = 0; cc < NC; cc++) acc[cc][r] = fma(a[e], b[cc][e], acc[cc][r]); \
        }                                                                                  \
    }
        if (nv == TV) {
            BINV_UNROLL
            for (uint q = 0; q < TV; q++) BINV_STREAM_STEP(q)
        } else {
            for (uint q = 0; q < nv; q++) BINV_STREAM_STEP(q)
        }
#undef BINV_STREAM_STEP
        if (t0 + TK < k1) BINV_STREAM_STORE(buf ^ 1u)
        barrier(CLK_LOCAL_MEM_FENCE);
        buf ^= 1u;
    }
#undef BINV_STREAM_FETCH
#undef BINV_STREAM_STORE
    BINV_UNROLL
    for (int cc = 0; cc < NC; cc++) {
        const uint j = j0 + lid + cc * TW;
        if (j < n) {
            BINV_UNROLL
            for (int r = 0; r < TR; r++)
                if (r < mr) P[((ulong)c * m + r0 + r) * n + j] = acc[cc][r];
        }
    }
    if (binv_gemm_arrive(fuse, cnt, get_group_id(1) * get_num_groups(0) + get_group_id(0),
                         nchunks, lid, &last))
        binv_gemm_tile_combine(P, m, n, nchunks, r0, mr, j0, min((uint)TN, n - j0), lid, TW,
                               alpha, beta, C, c_off, ldc);
}

/* Combines chunk partials in chunk order and applies the epilogue. */
__kernel void gemm_reduce(uint m, uint n, uint nchunks, float alpha, float beta,
                          __global const float *P, __global binv_t *C, ulong c_off, ulong ldc) {
    const uint j = get_global_id(0), i = get_global_id(1);
    if (i >= m || j >= n) return;
    binv_gemm_store(C, c_off + (ulong)i * ldc + j, binv_gemm_combine(P, m, n, nchunks, i, j),
                    alpha, beta);
}
