/* The native tensor-core GEMM (binv_options.path = BINV_PATH_NATIVE, NVIDIA
 * devices of compute capability >= 8.0): which of its three kernels runs,
 * their shapes and launches.  The kernels and their reduction order:
 * cl/gemm_native.cl (shared) with cl/gemm_native_mma.cl,
 * cl/gemm_native_stream.cl and cl/gemm_native_wg.cl; the schedule:
 * docs/schedules.md, "The native path". */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The three programs: cl/common.cl, the shared cl/gemm_native.cl, then the
 * program's own file. */
static const binv_program_desc NATIVE_MMA = {
    .family = "gemm_native", .sources = {binv_cl_gemm_native, binv_cl_gemm_native_mma}};
static const binv_program_desc NATIVE_STREAM = {
    .family = "gemm_native_stream",
    .sources = {binv_cl_gemm_native, binv_cl_gemm_native_stream}};
static const binv_program_desc NATIVE_WG = {
    .family = "gemm_native_wg",
    .sources = {binv_cl_gemm_native, binv_cl_gemm_native_wg},
    .flags = BINV_PROGRAM_SM90A};

/* Largest m for gemm_native_stream (BINV_NATIVE_SMALL_M overrides, 0 = never;
 * above 64 the kernel would need more than 4 m16 tiles). */
static size_t native_small_m(const binv_context *ctx) { return ctx->tuning.native_small_m; }

/* gemm_native_stream's shape for m <= 64 (cl/gemm_native_stream.cl): SWP warps per
 * work-group (8 SWP rows of W each), SST pipeline stages of SKS k-columns
 * (64..512: its local rows need at least 8 chunks for their swizzle), with
 * arows rows of A in local memory (8 for m <= 8, else 16 per m16 tile).  None
 * of it changes the mma sequence.  Defaults: for m <= 8 where four-warp
 * groups would not give every compute unit two, two warps and four stages
 * of 256 (twice the weight bytes in flight); otherwise four warps and four
 * stages of 128 (docs/tuning.md has the measurements).  Stages and stage
 * length shrink until the tiles fit local memory; 0 if they cannot (then
 * gemm_native runs, with the same bits).  BINV_NATIVE_STREAM="SWP,SST,SKS"
 * overrides (tuning). */
static int native_stream_shape(const binv_context *ctx, size_t n, unsigned arows,
                               unsigned *swp, unsigned *sst, unsigned *sks) {
    const int pairs = arows == 8 && binv_ceil_div(n, 32) < 2 * (size_t)ctx->info.compute_units;
    *swp = pairs ? 2 : 4;
    *sst = 4;
    *sks = pairs ? 256 : 128;
    if (ctx->tuning.native_stream.set) {
        *swp = ctx->tuning.native_stream.swp;
        *sst = ctx->tuning.native_stream.sst;
        *sks = ctx->tuning.native_stream.sks;
    }
    while ((size_t)*sst * (arows + 8 * *swp) * *sks * 2 > ctx->info.local_mem_size) {
        if (*sst > 3) (*sst)--;
        else if (*sks > 64) *sks /= 2;
        else if (*sst > 2) (*sst)--;
        else return 0;
    }
    return 1;
}

/* gemm_native_wg (wgmma, sm_90a) on devices of compute capability 9.0 unless
 * BINV_NATIVE_WGMMA=0 or the driver refused the sm_90a program once.  Shape
 * "WKS,WNW,WWM,WST,WN,WGW,R[,G]": k per stage (16, 32 or 64), warpgroups
 * per work-group, m64 tiles per warpgroup, stages, wgmma n (64, 128 or 256),
 * wgmma groups in flight across stages (0, 1), work-groups launched per
 * compute unit (the kernel is persistent: they walk the tiles) and an
 * optional cap on the work-groups in all (tests: several tiles per
 * work-group on small problems).  None of it changes the bits.  Defaults:
 * 128 x 128 tiles, unless that leaves compute units without a tile; then
 * 64 x 128, then 64 x 64 with six stages (the first that gives every
 * compute unit a tile, else the last; docs/tuning.md has the measurements).
 * BINV_NATIVE_WG overrides.  *use = 1 with the program, its defines, lws[0] = work-items,
 * tile[] = the work-group's rows and columns and *groups = work-groups to
 * launch; *use = 0 to run gemm_native instead.  A status other than
 * BINV_SUCCESS is an error to return. */
static binv_status native_wg_program(binv_context *ctx, binv_dtype dtype, int rows16, size_t m,
                                     size_t n, char *defines, size_t dsize, size_t lws[2],
                                     size_t tile[2], size_t *groups, cl_program *prog,
                                     int *use) {
    *use = 0;
    if (ctx->nv_cc != 90 || ctx->tuning.native_no_wgmma) return BINV_SUCCESS;
    pthread_mutex_lock(&ctx->lock);
    const int refused = ctx->no_wgmma;
    pthread_mutex_unlock(&ctx->lock);
    if (refused) return BINV_SUCCESS;
    static const unsigned shapes[3][8] = {
        {32, 1, 2, 3, 128, 0, 2, 0}, {32, 1, 1, 3, 128, 0, 4, 0}, {32, 1, 1, 6, 64, 0, 4, 0}};
    const size_t cus = ctx->info.compute_units ? ctx->info.compute_units : 1;
    unsigned v[8];
    for (int i = 0; i < 3; i++) {
        memcpy(v, shapes[i], sizeof v);
        if (binv_ceil_div(m, 64 * v[1] * v[2]) * binv_ceil_div(n, v[4]) >= cus) break;
    }
    /* BINV_NATIVE_WG (src/tuning.c checked the shape itself), where it fits
     * the device. */
    const unsigned *u = ctx->tuning.native_wg.v;
    if (ctx->tuning.native_wg.set && (size_t)128 * u[1] <= ctx->info.max_work_group_size &&
        (size_t)u[3] * (64 * u[1] * u[2] + u[4]) * u[0] * 2 <= ctx->info.local_mem_size)
        memcpy(v, u, sizeof v);
    snprintf(defines, dsize, "-DBINV_DTYPE=%d -DNVEC=%d -DWKS=%u -DWNW=%u "
             "-DWWM=%u -DWST=%u -DWN=%u -DWGW=%u", (int)dtype, rows16, v[0], v[1], v[2], v[3],
             v[4], v[5]);
    binv_status st = binv_program_get_desc(ctx, &NATIVE_WG, defines, prog);
    if (st == BINV_ERROR_BUILD_FAILED && !ctx->tuning.native_wg_given) {
        /* the driver refused the sm_90a program: mma.sync from now on */
        binv_debug(ctx, "gemm native: no sm_90a program (%s); mma.sync from now on",
                   binv_context_last_error(ctx));
        binv_clear_error(ctx);
        pthread_mutex_lock(&ctx->lock);
        ctx->no_wgmma = 1;
        pthread_mutex_unlock(&ctx->lock);
        return BINV_SUCCESS;
    }
    if (st != BINV_SUCCESS) return st;
    lws[0] = 128 * v[1];
    tile[0] = 64 * v[1] * v[2];
    tile[1] = v[4];
    const size_t tiles = binv_ceil_div(m, tile[0]) * binv_ceil_div(n, tile[1]);
    *groups = tiles < v[6] * cus ? tiles : v[6] * cus;
    if (v[7] && *groups > v[7]) *groups = v[7];
    *use = 1;
    return BINV_SUCCESS;
}

/* The native tensor-core path.  m <= 64 with 16-byte
 * aligned rows: gemm_native_stream (mma.sync); otherwise gemm_native_wg
 * (wgmma) on compute capability 9.0, else gemm_native (mma.sync, 128 x 128
 * tiles).  All three issue the same k16 tensor-core steps per output in the
 * same order (K never split); on the H100 a wgmma k16 step and an mma.sync
 * m16n8k16 gave the same bits in every test (test_gemm_native mixes
 * the kernels across m and checks the mma.sync-era golden hashes), so a
 * row's bits do not depend on which one ran. */
binv_status binv_gemm_native(binv_context *ctx, cl_command_queue queue, binv_dtype dtype,
                             size_t m, size_t n, size_t k, float alpha, cl_mem a,
                             size_t a_offset, size_t lda, cl_mem b, size_t b_offset, size_t ldb,
                             float beta, cl_mem c, size_t c_offset, size_t ldc,
                             cl_uint num_events, const cl_event *wait_list, cl_event *event) {
    BINV_RETURN_ERROR_ON(m > 0xffffffffu || n > 0xffffffffu || k > 0xffffffffu, ctx,
                         BINV_ERROR_INVALID_DIMENSION, "binv_gemm (native): m, n, k must be < 2^32");
    const int rows16 = lda % 8 == 0 && ldb % 8 == 0 && a_offset % 8 == 0 && b_offset % 8 == 0;
    const int vec = k % 8 == 0 && rows16;
    const char *kname;
    char defines[128];
    cl_program prog;
    binv_status st;
    size_t lws[2] = {1, 1}, gws[2] = {1, 1}, tile[2], groups;
    const unsigned smt = (unsigned)binv_ceil_div(m, 16);
    unsigned swp, sst, sks;
    int stream = 0, use_wg = 0;
    const int sa8 = m <= 8; /* gemm_native_stream keeps 8 rows of A, not 16 */
    if (m <= native_small_m(ctx) && rows16 &&
        native_stream_shape(ctx, n, sa8 ? 8 : 16 * smt, &swp, &sst, &sks)) {
        snprintf(defines, sizeof defines,
                 "-DBINV_DTYPE=%d -DSMT=%u -DSA8=%d -DSWP=%u -DSST=%u -DSKS=%u", (int)dtype, smt,
                 sa8, swp, sst, sks);
        st = binv_program_get_desc(ctx, &NATIVE_STREAM, defines, &prog);
        if (st != BINV_SUCCESS && st != BINV_ERROR_BUILD_FAILED) return st;
        stream = st == BINV_SUCCESS;
        if (!stream) {
            binv_debug(ctx, "gemm native: stream kernel build failed (%s); gemm_native",
                       binv_context_last_error(ctx));
            binv_clear_error(ctx);
        }
    }
    if (stream) {
        kname = "gemm_native_stream";
        lws[0] = 32 * swp;
        gws[0] = binv_ceil_div(n, 8 * swp) * lws[0];
    } else if ((st = native_wg_program(ctx, dtype, rows16, m, n, defines, sizeof defines, lws,
                                       tile, &groups, &prog, &use_wg)) != BINV_SUCCESS) {
        return st;
    } else if (use_wg) {
        kname = "gemm_native_wg";
        gws[0] = groups * lws[0];
    } else {
        /* Fragments through ldmatrix where the compiler takes it (the
         * shared address of a __local pointer); else 32-bit local loads.
         * Either way the same mma sequence, so the same bits.
         * BINV_NATIVE_LDM=0 forces the plain loads (tests compare the two). */
        int ldm = !ctx->tuning.native_no_ldm;
        /* Warp layout and local layout (BINV_NATIVE_SHAPE="NJ,WGM,WGN,SWZ"
         * for tuning; the mma sequence per output, so the bits, is the same
         * for every shape).  Default: 2 x 2 warps of 64 x 64 (128 x 128
         * tiles), swizzled local tiles, the fastest layout measured
         * (docs/tuning.md). */
        unsigned nj = 8, wgm = 2, wgn = 2, swz = 1;
        const unsigned a1 = ctx->tuning.native_shape.nj, a2 = ctx->tuning.native_shape.wgm,
                       a3 = ctx->tuning.native_shape.wgn, a4 = ctx->tuning.native_shape.swz;
        if (ctx->tuning.native_shape.set && (size_t)32 * a2 * a3 <= ctx->info.max_work_group_size &&
            (size_t)2 * (64 * a2 + 8 * a1 * a3) * (a4 ? 64 : 80) <= ctx->info.local_mem_size) {
            nj = a1; wgm = a2; wgn = a3; swz = a4;
        }
        for (;;) {
            snprintf(defines, sizeof defines, "-DBINV_DTYPE=%d -DNVEC=%d -DNLDM=%d -DNJ=%u "
                     "-DWGM=%u -DWGN=%u -DNSWZ=%u", (int)dtype, vec, ldm, nj, wgm, wgn, swz);
            st = binv_program_get_desc(ctx, &NATIVE_MMA, defines, &prog);
            if (st == BINV_ERROR_BUILD_FAILED && ldm) {
                binv_debug(ctx, "gemm native: ldmatrix build failed; plain local loads");
                ldm = 0;
                continue;
            }
            break;
        }
        if (st != BINV_SUCCESS) return st;
        kname = "gemm_native";
        lws[0] = 32 * wgm * wgn;
        gws[0] = binv_ceil_div(n, 8 * nj * wgn) * lws[0];
        gws[1] = binv_ceil_div(m, 64 * wgm);
    }
    cl_uint um = (cl_uint)m, un = (cl_uint)n, uk = (cl_uint)k;
    cl_ulong ao = a_offset, la = lda, bo = b_offset, lb = ldb, co = c_offset, lc = ldc;
    const binv_arg args[] = {BINV_ARG(um), BINV_ARG(un),    BINV_ARG(uk), BINV_ARG(alpha),
                             BINV_ARG(beta), BINV_ARG(a),   BINV_ARG(ao), BINV_ARG(la),
                             BINV_ARG(b),  BINV_ARG(bo),    BINV_ARG(lb), BINV_ARG(c),
                             BINV_ARG(co), BINV_ARG(lc)};
    st = binv_kernel_launch(ctx, queue, prog, kname, args, BINV_NARGS(args), 2, gws, lws,
                            num_events, wait_list, event);
    if (st != BINV_SUCCESS) return st;
    binv_debug(ctx, "%s %s m=%zu n=%zu k=%zu (%s)", kname, binv_dtype_name(dtype), m, n, k,
               defines);
    return BINV_SUCCESS;
}

