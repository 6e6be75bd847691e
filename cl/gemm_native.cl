/* gemm_native.cl — the opt-in NVIDIA tensor-core GEMM (binv_options.path =
 * BINV_PATH_NATIVE), built only for NVIDIA devices of compute capability
 * >= 8.0: inline PTX mma.sync.aligned.m16n8k16 with bf16 or f16 inputs and
 * f32 accumulation.  C[m, n] = alpha * A[m, k] * W[n, k]^T + beta * C (the
 * LLM layout: A NO_TRANS, W TRANS).
 *
 * REDUCTION ORDER (docs/schedules.md, "native path").  For output (i, j):
 *   acc = +0 (the four f32 accumulators of the fragment)
 *   for s = 0, 16, 32, ... < k (ascending; k padded with zeros to 16):
 *       acc = mma(A[i, s..s+15], W[j, s..s+15], acc)
 *   v = alpha * acc; if beta != 0: v = fma(beta, C[i, j], v); store (RNE).
 * Inside one mma the tensor core's own accumulation order applies: it is
 * fixed by the hardware (so the bits are fixed per GPU architecture, not
 * portable to other devices) and an element's result depends on its own row
 * of A, column of W and accumulator only.  K is never split, for any m, so the
 * bits of a row do not depend on m, the row's position or the offsets.
 *
 * Work-group: WGM x WGN warps (NVIDIA runs consecutive work-items of a 1-D
 * group as warps of 32), tile (64 WGM) x
 * (8 NJ WGN), K step 32, local memory double-buffered; warp w computes rows
 * 64*(w/WGN) .. +63, columns 8*NJ*(w%WGN) .. as 4 x NJ mma tiles of 16 x 8.
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"): with
 * g = lane / 4, t = lane % 4, A regs {A[g][2t..], A[g+8][2t..], A[g][2t+8..],
 * A[g+8][2t+8..]}, B regs {W[g][2t..], W[g][2t+8..]}, C {(g, 2t), (g, 2t+1),
 * (g+8, 2t), (g+8, 2t+1)}; the lower half of a 32-bit register holds the
 * element of lower index. */

#if BINV_DTYPE == 2
#define MMA_TYPE "f16"
#else
#define MMA_TYPE "bf16"
#endif

/* Shape (a choice of speed; every shape issues the same mma sequence per
 * output): WGM x WGN warps, each computing 64 rows x 8*NJ columns as 4 x NJ
 * mma tiles of 16 x 8.  The host picks it (src/gemm.c). */
#ifndef NJ
#define NJ 4
#endif
#ifndef WGM
#define WGM 2
#endif
#ifndef WGN
#define WGN 4
#endif
#define NT (32 * WGM * WGN) /* work-items */
#define NBM (64 * WGM)
#define NBN (8 * NJ * WGN)
#define NBK 32
#define FA (4 * NBM / NT) /* 16-byte groups of A each work-item stages per step */
#define FB (4 * NBN / NT)
/* Local tiles: rows of NBK elements as 16-byte chunks.  NSWZ = 0: rows
 * padded to 5 chunks (80 bytes), so the 8 rows an ldmatrix phase reads fall
 * on distinct banks.  NSWZ = 1: 4 chunks, unpadded, chunk c of row r at
 * slot c ^ ((r / 2) % 4) (two rows per 128 bytes, four row pairs on four
 * different slots: also conflict-free), 20% less local memory, which lets
 * 128 x 256 tiles fit the 48 KB NVIDIA's OpenCL allows. */
#ifndef NSWZ
#define NSWZ 0
#endif
#define ROWV (NSWZ ? 4 : 5) /* 16-byte chunks per local row */
inline uint nat_slot(uint r, uint c) { return NSWZ ? r * 4 + (c ^ ((r >> 1) & 3)) : r * 5 + c; }
/* 32-bit word index of element e (even) of local row r. */
inline uint nat_word(uint r, uint e) { return nat_slot(r, e / 8) * 4 + (e % 8) / 2; }

#ifndef NLDM
#define NLDM 0 /* fragments through ldmatrix (one instruction per 16 x 16 of A) */
#endif

#ifndef NVEC
#define NVEC 0 /* 16-byte global loads (k, lda, ldb, offsets multiples of 8) */
#endif

typedef ushort raw16;

/* Rows [r0, r0 + R) x k-columns [k0, k0 + 32) of a row-major matrix into
 * registers: 4R groups of 8 elements, F = 4R / NT per work-item; zeros
 * outside. */
inline void nat_fetch(__global const raw16 *p, ulong off, ulong ld, uint rows, uint k, uint r0,
                      uint k0, uint lid, uint F, uint4 *v) {
#pragma unroll
    for (uint n = 0; n < F; n++) {
        const uint i = lid + n * NT, r = i / 4, c = (i % 4) * 8;
        const uint gr = r0 + r, gk = k0 + c;
        uint4 x = (uint4)(0);
        if (gr < rows && gk < k) {
#if NVEC
            x = *(__global const uint4 *)(p + off + (ulong)gr * ld + gk);
#else
            __global const raw16 *q = p + off + (ulong)gr * ld + gk;
            ushort e[8];
            for (uint u = 0; u < 8; u++) e[u] = gk + u < k ? q[u] : (ushort)0;
            x = (uint4)(e[0] | ((uint)e[1] << 16), e[2] | ((uint)e[3] << 16),
                        e[4] | ((uint)e[5] << 16), e[6] | ((uint)e[7] << 16));
#endif
        }
        v[n] = x;
    }
}

inline void nat_put(__local uint4 *s, uint lid, uint F, const uint4 *v) {
#pragma unroll
    for (uint n = 0; n < F; n++) { /* one 16-byte store per chunk */
        const uint i = lid + n * NT;
        s[nat_slot(i / 4, i % 4)] = v[n];
    }
}

inline void nat_mma(float *d, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* The epilogue of both kernels: C[row, col] = alpha * acc (+ beta * C),
 * rounded to nearest even into the storage dtype; nothing outside m x n. */
inline void nat_store(__global raw16 *c, ulong c_off, ulong ldc, uint m, uint n, uint row,
                      uint col, float alpha, float beta, float acc) {
    if (row >= m || col >= n) return;
    const ulong ci = c_off + (ulong)row * ldc + col;
    float v = alpha * acc;
#if BINV_DTYPE == 2
    if (beta != 0.0f) v = fma(beta, vload_half(ci, (__global const half *)c), v);
    vstore_half_rte(v, ci, (__global half *)c);
#else
    if (beta != 0.0f) v = fma(beta, binv_bf16_to_f32(c[ci]), v);
    c[ci] = binv_f32_to_bf16(v);
#endif
}

#ifndef SMT /* the program of gemm_native (one kernel per program) */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void gemm_native(uint m, uint n, uint k, float alpha, float beta,
                 __global const raw16 *a, ulong a_off, ulong lda,
                 __global const raw16 *b, ulong b_off, ulong ldb,
                 __global raw16 *c, ulong c_off, ulong ldc) {
    __local uint4 As4[2][NBM * ROWV], Bs4[2][NBN * ROWV];
    const uint lid = get_local_id(0), lane = lid % 32, warp = lid / 32;
    const uint g = lane / 4, t = lane % 4;
    const uint m0 = get_group_id(1) * NBM, n0 = get_group_id(0) * NBN;
    const uint wm = (warp / WGN) * 64, wn = (warp % WGN) * (8 * NJ);

    float acc[4][NJ][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    uint4 va[FA], vb[FB];
    nat_fetch(a, a_off, lda, m, k, m0, 0, lid, FA, va);
    nat_fetch(b, b_off, ldb, n, k, n0, 0, lid, FB, vb);
    nat_put(As4[0], lid, FA, va);
    nat_put(Bs4[0], lid, FB, vb);
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint steps = (k + NBK - 1) / NBK;
    for (uint s = 0; s < steps; s++) {
        const uint cur = s & 1;
        if (s + 1 < steps) { /* next tile in flight during the mma */
            nat_fetch(a, a_off, lda, m, k, m0, (s + 1) * NBK, lid, FA, va);
            nat_fetch(b, b_off, ldb, n, k, n0, (s + 1) * NBK, lid, FB, vb);
        }
        __local const uint *A = (__local const uint *)As4[cur], *B = (__local const uint *)Bs4[cur];
#pragma unroll
        for (uint kk = 0; kk < NBK; kk += 16) {
            uint bf[NJ][2];
#if NLDM
            /* x4: matrices (rows n, k-halves): lanes 8q..8q+7 give the row
             * addresses of matrix q (PTX ldmatrix); two n8 tiles per load. */
#pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                const uint row = wn + j * 8 + (lane % 8) + (lane / 16) * 8;
                const uint col = kk + ((lane / 8) % 2) * 8;
                const uint addr = (uint)(ulong)(B + nat_word(row, col));
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(bf[j][0]), "=r"(bf[j][1]), "=r"(bf[j + 1][0]), "=r"(bf[j + 1][1])
                             : "r"(addr));
            }
#else
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const uint row = wn + j * 8 + g;
                bf[j][0] = B[nat_word(row, kk + 2 * t)];
                bf[j][1] = B[nat_word(row, kk + 2 * t + 8)];
            }
#endif
#pragma unroll
            for (int i = 0; i < 4; i++) {
#if NLDM
                uint a0, a1, a2, a3;
                const uint row = wm + i * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
                const uint col = kk + (lane / 16) * 8;
                const uint addr = (uint)(ulong)(A + nat_word(row, col));
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3)
                             : "r"(addr));
#else
                const uint row = wm + i * 16 + g;
                const uint a0 = A[nat_word(row, kk + 2 * t)];
                const uint a1 = A[nat_word(row + 8, kk + 2 * t)];
                const uint a2 = A[nat_word(row, kk + 2 * t + 8)];
                const uint a3 = A[nat_word(row + 8, kk + 2 * t + 8)];
#endif
#pragma unroll
                for (int j = 0; j < NJ; j++) nat_mma(acc[i][j], a0, a1, a2, a3, bf[j][0], bf[j][1]);
            }
        }
        if (s + 1 < steps) {
            nat_put(As4[cur ^ 1], lid, FA, va);
            nat_put(Bs4[cur ^ 1], lid, FB, vb);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                nat_store(c, c_off, ldc, m, n, m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0),
                          n0 + wn + j * 8 + 2 * t + (e & 1), alpha, beta, acc[i][j][e]);
}

#endif /* !SMT */

/* ---- gemm_native_stream: the same mma sequence for small m -----------------
 * For m <= 64 the 128 x 128 tiles above leave the GPU idle (n / 128 work-groups)
 * and fetch each weight row through a 2-D tile machinery built for reuse.  This
 * kernel streams the weights instead: a work-group of SWP warps owns 8 SWP rows
 * of W (one n8 mma tile per warp) and all m (<= 16 SMT) rows of A, and walks k
 * in stages of SKS through an SST-deep cp.async pipeline (16-byte copies into
 * XOR-swizzled local rows; zero-fill past n and k).  Fragments come through
 * ldmatrix exactly as above.
 *
 * REDUCTION ORDER: identical to gemm_native, instruction for instruction.  Each
 * output's accumulators start at +0 and take one m16n8k16 mma per 16-column
 * block of k, ascending, over the same 2 * ceil(k / 32) blocks (the last may
 * be zero padding, as in gemm_native's 32-wide steps), with the same operand
 * roles and fragment contents; K is never split; the same epilogue.  So a row
 * of C has the same bits here as from gemm_native, at any m (test_gemm's
 * native test compares batches served by both kernels). */
#ifdef SMT /* the program of gemm_native_stream: SMT m16 tiles (m <= 16 SMT),
              SWP warps per work-group, SST pipeline stages of SKS k-columns
              (a multiple of 32), all chosen by the host (src/gemm.c) */
#define SNT (32 * SWP)
#define SKC (SKS / 8) /* 16-byte chunks per local row */
#define SAR (16 * SMT)
#define NS_STR(x) #x
#define NS_XSTR(x) NS_STR(x)

/* Chunk c of local row r: rows of SKC chunks, the low three bits of c XORed
 * with r, so that the 8 rows an ldmatrix phase reads (consecutive r, same c)
 * sit on 8 different 16-byte bank groups. */
inline uint ns_slot(uint r, uint c) { return r * SKC + (c ^ (r & 7)); }

/* Starts the copies of rows [r0, r0 + R) x k-columns [k0, k0 + SKS) of a
 * row-major matrix (rows valid below `rows`) into local stage s; bytes past
 * the matrix are zero-filled (cp.async source size < 16).  Row starts are
 * 16-byte aligned (host precondition: offsets and leading dimensions are
 * multiples of 8 elements). */
inline void ns_copy(__local uint4 *s, __global const raw16 *p, ulong off, ulong ld, uint rows,
                    uint k, uint r0, uint R, uint k0, uint lid) {
    for (uint i = lid; i < R * SKC; i += SNT) {
        const uint r = i / SKC, ch = i % SKC, gr = r0 + r, gk = k0 + ch * 8;
        const uint valid = gr < rows && gk < k ? min(8u, k - gk) : 0u;
        const ulong src = (ulong)(p + off + (valid ? (ulong)gr * ld + gk : 0));
        const uint dst = (uint)(ulong)(s + ns_slot(r, ch));
        asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1;"
                     " cp.async.cg.shared.global [%0], [g], 16, %2; }"
                     :: "r"(dst), "l"(src), "r"(2 * valid) : "memory");
    }
}

inline void ns_ldm4(uint *r, __local const uint4 *s, uint row, uint ch) {
    const uint addr = (uint)(ulong)(s + ns_slot(row, ch));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr) : "memory");
}

__kernel __attribute__((reqd_work_group_size(SNT, 1, 1)))
void gemm_native_stream(uint m, uint n, uint k, float alpha, float beta,
                        __global const raw16 *a, ulong a_off, ulong lda,
                        __global const raw16 *b, ulong b_off, ulong ldb,
                        __global raw16 *c, ulong c_off, ulong ldc) {
    __local uint4 As[SST][SAR * SKC], Ws[SST][8 * SWP * SKC];
    const uint lid = get_local_id(0), lane = lid % 32, warp = lid / 32;
    const uint g = lane / 4, t = lane % 4;
    const uint n0 = get_group_id(0) * (8 * SWP);
    const uint ma = min(m, (uint)SAR);
    /* Rows of A at and past m are never copied: zero them once in every stage. */
    for (uint st = 0; st < SST; st++)
        for (uint i = ma * SKC + lid; i < SAR * SKC; i += SNT) As[st][i] = (uint4)(0);

    float acc[SMT][4];
#pragma unroll
    for (int i = 0; i < SMT; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[i][e] = 0.0f;

    const uint kpad = (k + 31) / 32 * 32; /* gemm_native's 2 * ceil(k / 32) mma blocks */
    const uint steps = (kpad + SKS - 1) / SKS;
    /* One commit group per stage (empty ones past the end keep the count
     * uniform): "all but the newest SST - 2 groups done" = stage s landed. */
#pragma unroll
    for (uint st = 0; st < SST - 1; st++) {
        if (st < steps) {
            ns_copy(As[st], a, a_off, lda, m, k, 0, ma, st * SKS, lid);
            ns_copy(Ws[st], b, b_off, ldb, n, k, n0, 8 * SWP, st * SKS, lid);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (uint s = 0; s < steps; s++) {
        /* This work-item's copies of stage s done, then everyone's; everyone
         * is past stage s - 1, whose buffer is refilled next. */
        asm volatile("cp.async.wait_group " NS_XSTR(SST - 2) ";" ::: "memory");
        barrier(CLK_LOCAL_MEM_FENCE);
        const uint nx = s + SST - 1;
        if (nx < steps) {
            ns_copy(As[nx % SST], a, a_off, lda, m, k, 0, ma, nx * SKS, lid);
            ns_copy(Ws[nx % SST], b, b_off, ldb, n, k, n0, 8 * SWP, nx * SKS, lid);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
        __local const uint4 *A = As[s % SST], *W = Ws[s % SST];
#pragma unroll
        for (uint kk = 0; kk < SKS; kk += 32) {
            if (s * SKS + kk >= kpad) break; /* uniform: past gemm_native's last block */
            /* B: matrix q = rows warp*8.., k-columns kk + 8q..: {b0, b1} of
             * the block at kk, then of the block at kk + 16. */
            uint bf[4];
            ns_ldm4(bf, W, warp * 8 + lane % 8, kk / 8 + lane / 8);
#pragma unroll
            for (int i = 0; i < SMT; i++)
#pragma unroll
                for (uint h = 0; h < 2; h++) {
                    uint af[4];
                    ns_ldm4(af, A, i * 16 + lane % 8 + ((lane / 8) % 2) * 8,
                            kk / 8 + 2 * h + lane / 16);
                    nat_mma(acc[i], af[0], af[1], af[2], af[3], bf[2 * h], bf[2 * h + 1]);
                }
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");

#pragma unroll
    for (int i = 0; i < SMT; i++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            nat_store(c, c_off, ldc, m, n, i * 16 + g + (e >= 2 ? 8 : 0),
                      n0 + warp * 8 + 2 * t + (e & 1), alpha, beta, acc[i][e]);
}
#endif /* SMT */
