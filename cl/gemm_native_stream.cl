/* gemm_native_stream.cl — gemm_native_stream: the same mma sequence for small m.
 * Built after cl/common.cl and cl/gemm_native.cl (src/gemm_native.c).
 *
 * For m <= 64 gemm_native's 128 x 128 tiles leave the GPU idle (n / 128 work-groups)
 * and fetch each weight row through a 2-D tile machinery built for reuse.  This
 * kernel streams the weights instead: a work-group of SWP warps owns 8 SWP rows
 * of W (one n8 mma tile per warp) and all m (<= 16 SMT) rows of A, and walks k
 * in stages of SKS through an SST-deep cp.async pipeline (16-byte copies into
 * XOR-swizzled local rows; zero-fill past n and k).  Fragments come through
 * ldmatrix exactly as in gemm_native (cl/gemm_native_mma.cl).
 *
 * REDUCTION ORDER: identical to gemm_native, instruction for instruction.  Each
 * output's accumulators start at +0 and take one m16n8k16 mma per 16-column
 * block of k, ascending, over the same 2 * ceil(k / 32) blocks (the last may
 * be zero padding, as in gemm_native's 32-wide steps), with the same operand
 * roles and fragment contents; K is never split; the same epilogue.  So a row
 * of C has the same bits here as from gemm_native, at any m
 * (tests/test_gemm_native.c compares its rows with those of the large-m kernel: on
 * compute capability 9.0 gemm_native_wg, and gemm_native with
 * BINV_NATIVE_WGMMA=0). */
/* The program of gemm_native_stream: SMT m16 tiles (m <= 16 SMT), SWP warps
 * per work-group, SST pipeline stages of SKS k-columns (a multiple of 32),
 * all chosen by the host (src/gemm_native.c). */
#define SNT (32 * SWP)
#define SKC (SKS / 8) /* 16-byte chunks per local row */
#ifndef SA8
#define SA8 0 /* 1: m <= 8, so A's rows 8..15 are zero (see below) */
#endif
#define SAR (SA8 ? 8 : 16 * SMT) /* rows of A kept in local memory */

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
        nat_cp16(dst, src, 2 * valid);
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
#if SA8
            /* m <= 8: rows 8..15 of the m16 tile are zero, so their fragments
             * (a1, a3) are the constant 0 rather than loads of zeros: the mma
             * sees the same operands and gives the same bits, and local memory
             * holds 8 rows of A instead of 16.  Matrix q of one ldmatrix.x4 =
             * rows 0..7, k-columns kk + 8q..: {a0, a2} of both blocks. */
            uint af[4];
            ns_ldm4(af, A, lane % 8, kk / 8 + lane / 8);
#pragma unroll
            for (uint h = 0; h < 2; h++)
                nat_mma(acc[0], af[2 * h], 0u, af[2 * h + 1], 0u, bf[2 * h], bf[2 * h + 1]);
#else
#pragma unroll
            for (int i = 0; i < SMT; i++)
#pragma unroll
                for (uint h = 0; h < 2; h++) {
                    uint af[4];
                    ns_ldm4(af, A, i * 16 + lane % 8 + ((lane / 8) % 2) * 8,
                            kk / 8 + 2 * h + lane / 16);
                    nat_mma(acc[i], af[0], af[1], af[2], af[3], bf[2 * h], bf[2 * h + 1]);
                }
#endif
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");

#pragma unroll
    for (int i = 0; i < SMT; i++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            nat_store2(c, c_off, ldc, m, n, i * 16 + g + (e >= 2 ? 8 : 0), n0 + warp * 8 + 2 * t,
                       alpha, beta, acc[i][e], acc[i][e + 1]);
}
