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

/* 16-byte vector loads of storage elements, for kernels that have checked
 * (on the host) that the address is 16-byte aligned: BINV_VW elements, widened
 * exactly to f32 into out[0 .. BINV_VW-1].  Same values as BINV_LOAD. */
#if BINV_DTYPE == 1
#define BINV_VW 4
inline void binv_load_vec(__global const binv_t *p, ulong idx, float *out) {
    float4 v = *(__global const float4 *)(p + idx);
    out[0] = v.s0; out[1] = v.s1; out[2] = v.s2; out[3] = v.s3;
}
#else
#define BINV_VW 8
inline void binv_load_vec(__global const binv_t *p, ulong idx, float *out) {
    ushort8 v = *(__global const ushort8 *)(p + idx);
    ushort w[8] = {v.s0, v.s1, v.s2, v.s3, v.s4, v.s5, v.s6, v.s7};
#if BINV_DTYPE == 2
    for (int i = 0; i < 8; i++) out[i] = vload_half(i, (const half *)w);
#else
    for (int i = 0; i < 8; i++) out[i] = binv_bf16_to_f32(w[i]);
#endif
}
#endif
