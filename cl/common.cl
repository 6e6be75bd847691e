/* common.cl — shared by every kernel family of libbinv-cl.
 *
 * Floating-point rules (the portable-bits contract):
 *  - FP_CONTRACT OFF: no compiler may fuse a*b+c; every fused multiply-add
 *    in the library is an explicit fma(), every other product and sum is a
 *    separately rounded * or +.
 *  - Built without fast-math or mad-enable, with correctly rounded / and sqrt.
 *  - No built-in transcendental functions and no native_* in the portable
 *    path: they are not correctly rounded and differ between devices.
 *
 * Storage dtype is chosen per program by -DBINV_DTYPE (1 f32, 2 f16, 3 bf16);
 * arithmetic is f32 for every storage dtype. */
#pragma OPENCL FP_CONTRACT OFF

#ifndef BINV_DTYPE
#define BINV_DTYPE 1
#endif

/* bf16 <-> f32.  bf16 is the top half of an f32; rounding to nearest even on
 * store, NaN kept quiet (and its sign kept) rather than rounded to infinity. */
inline float binv_bf16_to_f32(ushort h) { return as_float(((uint)h) << 16); }
inline ushort binv_f32_to_bf16(float f) {
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

#if BINV_DTYPE == 1
typedef float binv_t;
#define BINV_LOAD(p, i) ((p)[(i)])
#define BINV_STORE(p, i, v) ((p)[(i)] = (v))
#elif BINV_DTYPE == 2
typedef half binv_t; /* storage only: vload_half/vstore_half need no cl_khr_fp16 */
#define BINV_LOAD(p, i) vload_half((i), (p))
#define BINV_STORE(p, i, v) vstore_half_rte((v), (i), (p))
#elif BINV_DTYPE == 3
typedef ushort binv_t;
#define BINV_LOAD(p, i) binv_bf16_to_f32((p)[(i)])
#define BINV_STORE(p, i, v) ((p)[(i)] = binv_f32_to_bf16(v))
#else
#error "BINV_DTYPE must be 1 (f32), 2 (f16) or 3 (bf16)"
#endif
