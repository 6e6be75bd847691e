/* gemm_native.cl — the opt-in NVIDIA tensor-core GEMM (binv_options.path =
 * BINV_PATH_NATIVE), built only for NVIDIA devices of compute capability
 * >= 8.0: inline PTX mma.sync.aligned.m16n8k16 with bf16 or f16 inputs and
 * f32 accumulation.  C[m, n] = alpha * A[m, k] * W[n, k]^T + beta * C (the
 * LLM layout: A NO_TRANS, W TRANS).
 *
 * REDUCTION ORDER (docs/schedules.md, "The native path"), shared by the
 * three kernels, one program each: gemm_native (cl/gemm_native_mma.cl),
 * gemm_native_stream (cl/gemm_native_stream.cl) and gemm_native_wg
 * (cl/gemm_native_wg.cl).  This file holds the contract and the pieces the
 * three share; src/gemm_native.c builds each program from cl/common.cl, this
 * file and the program's own file, in that order.  For output (i, j):
 *   acc = +0 (f32)
 *   for s = 0, 16, 32, ... < 32 * ceil(k / 32) (ascending; k zero-padded):
 *       acc = mma(A[i, s..s+15], W[j, s..s+15], acc)   (one tensor-core k16 step)
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

#define NS_STR(x) #x
#define NS_XSTR(x) NS_STR(x)

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

/* One 16-byte cp.async (Ampere+) from global address src into local
 * (shared) address dst; bytes past `bytes` (0..16) are zero-filled, and
 * with bytes = 0 nothing is read. */
inline void nat_cp16(uint dst, ulong src, uint bytes) {
    asm volatile("{ .reg .u64 g; cvta.to.global.u64 g, %1;"
                 " cp.async.cg.shared.global [%0], [g], 16, %2; }"
                 :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}

/* The epilogue of every kernel here: C[row, col] = alpha * acc (+ beta * C),
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

/* Columns col and col + 1 (col even) of a row: one 4-byte store where both
 * are inside and the pair is 4-byte aligned, else two nat_store.  The same
 * arithmetic per element, so the same bits. */
inline void nat_store2(__global raw16 *c, ulong c_off, ulong ldc, uint m, uint n, uint row,
                       uint col, float alpha, float beta, float acc0, float acc1) {
    const ulong ci = c_off + (ulong)row * ldc + col;
    if (row >= m || col + 1 >= n || ci % 2) {
        nat_store(c, c_off, ldc, m, n, row, col, alpha, beta, acc0);
        nat_store(c, c_off, ldc, m, n, row, col + 1, alpha, beta, acc1);
        return;
    }
    float2 v = (float2)(alpha * acc0, alpha * acc1);
#if BINV_DTYPE == 2
    if (beta != 0.0f) v = fma((float2)(beta), vload_half2(ci / 2, (__global const half *)c), v);
    vstore_half2_rte(v, ci / 2, (__global half *)c);
#else
    __global uint *c2 = (__global uint *)(c + ci);
    if (beta != 0.0f) {
        const uint old = *c2;
        v.x = fma(beta, binv_bf16_to_f32((ushort)(old & 0xffff)), v.x);
        v.y = fma(beta, binv_bf16_to_f32((ushort)(old >> 16)), v.y);
    }
    *c2 = (uint)binv_f32_to_bf16(v.x) | ((uint)binv_f32_to_bf16(v.y) << 16);
#endif
}
