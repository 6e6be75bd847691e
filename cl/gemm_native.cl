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
            for (int e = 0; e < 4; e++) {
                const uint row = m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0);
                const uint col = n0 + wn + j * 8 + 2 * t + (e & 1);
                if (row < m && col < n) {
                    const ulong ci = c_off + (ulong)row * ldc + col;
                    float v = alpha * acc[i][j][e];
#if BINV_DTYPE == 2
                    if (beta != 0.0f) v = fma(beta, vload_half(ci, (__global const half *)c), v);
                    vstore_half_rte(v, ci, (__global half *)c);
#else
                    if (beta != 0.0f) v = fma(beta, binv_bf16_to_f32(c[ci]), v);
                    c[ci] = binv_f32_to_bf16(v);
#endif
                }
            }
}
