/* gemm_native_wg.cl — gemm_native_wg: Hopper warpgroup MMA (sm_90a).
 * Built after cl/common.cl and cl/gemm_native.cl (src/gemm_native.c).
 *
 * wgmma.mma_async m64nWNk16 with both operands in local memory, for NVIDIA
 * devices of compute capability 9.0.  NVIDIA's OpenCL C compiler targets
 * sm_90 and refuses sm_90a instructions, so each one is written after a
 * "// BINV_SM90A " marker: the source build compiles it as a comment with its
 * operands already substituted, and the host (src/program.c, binv_ptx_sm90a)
 * strips the markers, retargets the PTX to sm_90a and builds that from the
 * binary.
 *
 * REDUCTION ORDER: for output (i, j) the accumulator starts at +0 and takes
 * one k16 tensor-core step per 16-column block of k, ascending, over
 * 2 * ceil(k / 32) blocks (k zero-padded), K never split; the same epilogue
 * as gemm_native.  Inside a step the tensor core's fixed order applies.
 *
 * Work-group: WNW warpgroups of 128 work-items, each computing WWM m64 x WN
 * tiles (tile (64 WWM WNW) x WN, WN = 64, 128 or 256).  Local tiles: rows of WKS elements
 * (WKS * 2 bytes), 16-byte chunks XOR-swizzled as the descriptor's 128-byte
 * (WKS = 64), 64-byte (32) or 32-byte (16) mode expects; WST stages in a cp.async
 * pipeline.  Accumulator fragment (PTX ISA, wgmma D for .f32): work-item
 * (warp w of its warpgroup, lane = 4g + t) holds d[4j + e] = D[16w + g + 8(e/2)]
 * [8j + 2t + e%2], j < WN / 8. */
#ifndef WN
#define WN 128 /* wgmma n: columns per work-group, 64, 128 or 256 */
#endif
#ifndef WGW
#define WGW 0 /* wgmma groups left in flight across a stage boundary (0 or 1) */
#endif
#define WNT (128 * WNW)
#define WBM (64 * WWM * WNW)
#define WRB (WKS * 2)                 /* bytes per local row */
#define WSB (WKS == 64 ? 3 : WKS == 32 ? 2 : 1) /* swizzle: chunk bits XORed with address bits 7.. */
#define WA_BYTES (WBM * WRB)          /* one stage of A */
#define WB_BYTES (WN * WRB)
#define WSTAGE (WA_BYTES + WB_BYTES)

/* Byte offset of chunk ch of row r in a tile whose base is 1024-aligned. */
inline uint wg_off(uint r, uint ch) {
    const uint o = r * WRB + ch * 16;
    return o ^ (((o >> 7) & ((1u << WSB) - 1)) << 4);
}

/* Shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"):
 * start >> 4 in bits 0-13, leading offset (unused by swizzled K-major: 1) in
 * 16-29, stride between 8-row groups >> 4 in 32-45, swizzle mode in 62-63
 * (1 = 128-byte, 2 = 64-byte, 3 = 32-byte). */
inline ulong wg_desc(uint addr) {
    return (ulong)((addr & 0x3FFFF) >> 4) | ((ulong)1 << 16) | ((ulong)((8 * WRB) >> 4) << 32) |
           ((ulong)(WKS == 64 ? 1 : WKS == 32 ? 2 : 3) << 62);
}

/* One k16 step: D (64 x WN, f32) += A (64 x 16, descriptor da) * B^T (WN x 16,
 * descriptor db); both K-major, no transposition, scale 1. */
inline void wg_mma(float *d, ulong da, ulong db) {
#if WN == 256
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %130, 0;\n"
                 "// BINV_SM90A wgmma.mma_async.sync.aligned.m64n256k16.f32." MMA_TYPE "." MMA_TYPE
                 " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
                 : "l"(da), "l"(db), "r"(1) : "memory");
#elif WN == 128
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %66, 0;\n"
                 "// BINV_SM90A wgmma.mma_async.sync.aligned.m64n128k16.f32." MMA_TYPE "." MMA_TYPE
                 " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1) : "memory");
#else
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %34, 0;\n"
                 "// BINV_SM90A wgmma.mma_async.sync.aligned.m64n64k16.f32." MMA_TYPE "." MMA_TYPE
                 " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1) : "memory");
#endif
}

/* Rows [r0, r0 + R) x k-columns [k0, k0 + WKS) into the swizzled tile;
 * zeros past `rows` and k: element loads and 16-byte local stores, for rows
 * that are not 16-byte aligned (!NVEC). */
inline void wg_load(__local uint4 *tile, __global const raw16 *p, ulong off, ulong ld,
                    uint rows, uint k, uint r0, uint R, uint k0, uint lid) {
    for (uint i = lid; i < R * (WKS / 8); i += WNT) {
        const uint r = i / (WKS / 8), ch = i % (WKS / 8), gr = r0 + r, gk = k0 + ch * 8;
        const uint valid = gr < rows && gk < k ? min(8u, k - gk) : 0u;
        ushort e[8];
        __global const raw16 *q = p + off + (ulong)gr * ld + gk;
        for (uint u = 0; u < 8; u++) e[u] = u < valid ? q[u] : (ushort)0;
        tile[wg_off(r, ch) / 16] = (uint4)(e[0] | ((uint)e[1] << 16), e[2] | ((uint)e[3] << 16),
                                           e[4] | ((uint)e[5] << 16), e[6] | ((uint)e[7] << 16));
    }
}

#if NVEC
/* The cp.async plan: work-item lid copies chunk column lid % WCR of rows
 * lid / WCR + u WRS (u = 0, 1, ...) of both tiles at every stage, so its
 * source pointers, row checks and local offsets are fixed and only k moves.
 * Needs WRS to divide both tiles' rows (WBM and WN; the host checks) and to
 * be a multiple of 8 (the XOR swizzle repeats every 8 rows). */
#define WCR (WKS / 8)   /* chunks per row */
#define WRS (WNT / WCR) /* rows between a work-item's chunks */
inline void wg_copy(uint dst, __global const raw16 *src, ulong step, long rows_left, uint R,
                    uint bytes, __global const raw16 *safe) {
#pragma unroll
    for (uint u = 0; u < R / WRS; u++) {
        const int ok = (long)(u * WRS) < rows_left && bytes; /* else no source at all */
        nat_cp16(dst + u * WRS * WRB, (ulong)(ok ? src + u * step : safe), ok ? bytes : 0u);
    }
}
#endif

__kernel __attribute__((reqd_work_group_size(WNT, 1, 1)))
void gemm_native_wg(uint m, uint n, uint k, float alpha, float beta,
                    __global const raw16 *a, ulong a_off, ulong lda,
                    __global const raw16 *b, ulong b_off, ulong ldb,
                    __global raw16 *c, ulong c_off, ulong ldc) {
    __local uint4 smem[WST * WSTAGE / 16] __attribute__((aligned(1024)));
    const uint lid = get_local_id(0), wg = lid / 128, w = (lid / 32) % 4, lane = lid % 32;
    const uint g = lane / 4, t = lane % 4;
    const uint sbase = (uint)(ulong)smem;
    /* Persistent: the work-groups walk the output tiles, as many at a time
     * as the host launched; each tile is computed whole by one work-group.
     * Order: bands of WGROUP tile rows, column by column inside a band, so
     * that the tiles in flight cover a compact block of C and re-read A and
     * W from L2 rather than from memory (a choice of speed only). */
#define WGROUP 8
    const uint tiles_n = (n + WN - 1) / WN, tiles_m = (m + WBM - 1) / WBM;
    for (uint tile = get_group_id(0); tile < tiles_n * tiles_m; tile += get_num_groups(0)) {
        const uint band = tile / (WGROUP * tiles_n), in = tile % (WGROUP * tiles_n);
        const uint rows = min((uint)WGROUP, tiles_m - band * WGROUP);
        const uint m0 = (band * WGROUP + in % rows) * WBM, n0 = in / rows * WN;

        float acc[WWM][WN / 2];
#pragma unroll
        for (int i = 0; i < WWM; i++)
#pragma unroll
            for (int e = 0; e < WN / 2; e++) acc[i][e] = 0.0f;

        const uint nblk = (k + 31) / 32 * 2; /* k16 blocks, as gemm_native */
        const uint steps = (nblk * 16 + WKS - 1) / WKS;
#if NVEC
        const uint wr = lid / WCR, wc = lid % WCR;
        __global const raw16 *pa = a + a_off + (ulong)(m0 + wr) * lda + wc * 8;
        __global const raw16 *pb = b + b_off + (ulong)(n0 + wr) * ldb + wc * 8;
        const long la = (long)m - (long)(m0 + wr), lb = (long)n - (long)(n0 + wr);
        const uint oa = wg_off(wr, wc), ob = WA_BYTES + wg_off(wr, wc);
#define WG_LOAD(st, kb)                                                                        \
        do {                                                                                   \
            const uint k0_ = (kb) * WKS + wc * 8;                                              \
            const uint by_ = k0_ < k ? 2 * min(8u, k - k0_) : 0u;                              \
            const uint sb_ = sbase + (st) * WSTAGE;                                            \
            wg_copy(sb_ + oa, pa + (kb) * WKS, (ulong)WRS * lda, la, WBM, by_, a);             \
            wg_copy(sb_ + ob, pb + (kb) * WKS, (ulong)WRS * ldb, lb, WN, by_, b);              \
        } while (0)
#else
#define WG_LOAD(st, kb)                                                                        \
        do {                                                                                   \
            __local uint4 *sp_ = smem + (st) * WSTAGE / 16;                                    \
            wg_load(sp_, a, a_off, lda, m, k, m0, WBM, (kb) * WKS, lid);                       \
            wg_load(sp_ + WA_BYTES / 16, b, b_off, ldb, n, k, n0, WN, (kb) * WKS, lid);        \
        } while (0)
#endif
        /* WD stages in flight ahead of the one computed; with WGW = 1 one more
         * stage is still being read by the previous wgmma group. */
#define WD (WST - 1 - WGW)
#pragma unroll
        for (uint st = 0; st < WD; st++) {
            if (st < steps) WG_LOAD(st, st);
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        for (uint s = 0; s < steps; s++) {
            asm volatile("cp.async.wait_group " NS_XSTR(WD - 1) ";" ::: "memory");
            /* local writes (generic proxy) become visible to wgmma (async proxy) */
            asm volatile("// BINV_SM90A fence.proxy.async.shared::cta;" ::: "memory");
            /* everyone's copies of stage s landed; every wgmma group before
             * s - WGW finished, so stage s + WD's buffer is free */
            barrier(CLK_LOCAL_MEM_FENCE);
            const uint nx = s + WD;
            if (nx < steps) WG_LOAD(nx % WST, nx);
            asm volatile("cp.async.commit_group;" ::: "memory");
            const uint sb = sbase + (s % WST) * WSTAGE;
            asm volatile("// BINV_SM90A wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
            for (uint kk = 0; kk < WKS / 16; kk++) {
                /* WKS <= 32: every stage holds whole blocks of the even nblk */
                if (WKS <= 32 || s * (WKS / 16) + kk < nblk) {
#pragma unroll
                    for (uint i = 0; i < WWM; i++)
                        wg_mma(acc[i], wg_desc(sb + (wg * WWM + i) * 64 * WRB + kk * 32),
                               wg_desc(sb + WA_BYTES + kk * 32));
                }
            }
            asm volatile("// BINV_SM90A wgmma.commit_group.sync.aligned;" ::: "memory");
            asm volatile("// BINV_SM90A wgmma.wait_group.sync.aligned " NS_XSTR(WGW) ";" ::: "memory");
        }
        asm volatile("// BINV_SM90A wgmma.wait_group.sync.aligned 0;" ::: "memory");
        asm volatile("cp.async.wait_group 0;" ::: "memory");
#undef WD
#undef WG_LOAD

#if WBM * WN * 2 <= WST * WSTAGE
        /* beta = 0 and 16-byte aligned rows of C: the tile goes out through local
         * memory (rows of WN elements, 16-byte chunks XOR-swizzled by row) as
         * coalesced 16-byte stores.  Each element is rounded exactly as
         * nat_store rounds it. */
        if (beta == 0.0f && c_off % 8 == 0 && ldc % 8 == 0) {
            barrier(CLK_LOCAL_MEM_FENCE); /* every warpgroup is done with the stages */
            __local uint *cs = (__local uint *)smem;
#pragma unroll
            for (int i = 0; i < WWM; i++)
#pragma unroll
                for (int j = 0; j < WN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e += 2) {
                        const uint r = (wg * WWM + i) * 64 + 16 * w + g + 8 * (e / 2);
                        const uint word = r * (WN / 2) + ((j ^ (r & 7)) * 4) + t;
                        const float2 v = (float2)(alpha * acc[i][4 * j + e], alpha * acc[i][4 * j + e + 1]);
#if BINV_DTYPE == 2
                        vstore_half2_rte(v, word, (__local half *)cs);
#else
                        cs[word] = (uint)binv_f32_to_bf16(v.x) | ((uint)binv_f32_to_bf16(v.y) << 16);
#endif
                    }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint q = lid; q < WBM * (WN / 8); q += WNT) {
                const uint r = q / (WN / 8), ch = q % (WN / 8), row = m0 + r, col = n0 + ch * 8;
                if (row >= m || col >= n) continue;
                const uint4 x = smem[r * (WN / 8) + (ch ^ (r & 7))];
                const ulong ci = c_off + (ulong)row * ldc + col;
                if (col + 8 <= n) {
                    *(__global uint4 *)(c + ci) = x;
                } else {
                    const uint xs[4] = {x.x, x.y, x.z, x.w};
                    for (uint u = 0; col + u < n; u++)
                        c[ci + u] = (ushort)(xs[u / 2] >> (16 * (u % 2)));
                }
            }
        } else
#endif
        {
#pragma unroll
            for (int i = 0; i < WWM; i++)
#pragma unroll
                for (int j = 0; j < WN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e += 2)
                        nat_store2(c, c_off, ldc, m, n,
                                   m0 + (wg * WWM + i) * 64 + 16 * w + g + 8 * (e / 2),
                                   n0 + 8 * j + 2 * t, alpha, beta, acc[i][4 * j + e],
                                   acc[i][4 * j + e + 1]);
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the next tile refills local memory */
    }
}
