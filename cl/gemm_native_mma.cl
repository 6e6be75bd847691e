/* gemm_native_mma.cl — gemm_native: mma.sync m16n8k16 over (64 WGM) x
 * (8 NJ WGN) tiles, the native path's kernel for large m where wgmma is not
 * used.  Its shape macros, the reduction order it follows and the helpers it
 * calls are in cl/gemm_native.cl, built before this file (src/gemm_native.c).
 * One kernel per program. */
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
            for (int e = 0; e < 4; e += 2)
                nat_store2(c, c_off, ldc, m, n, m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0),
                           n0 + wn + j * 8 + 2 * t, alpha, beta, acc[i][j][e], acc[i][j][e + 1]);
}
