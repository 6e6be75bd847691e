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

/* Full unrolling of loops over register arrays (accumulators, staged tiles),
 * so that compilers keep them in registers rather than in private memory.
 * -DBINV_NO_UNROLL (BINV_EXTRA_DEFINES) leaves the choice to the compiler. */
#ifdef BINV_NO_UNROLL
#define BINV_UNROLL
#else
#define BINV_UNROLL _Pragma("unroll")
#endif

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
#elif BINV_DTYPE == 2
#define BINV_VW 8
inline void binv_load_vec(__global const binv_t *p, ulong idx, float *out) {
    const float8 v = vload_half8(0, p + idx);
    out[0] = v.s0; out[1] = v.s1; out[2] = v.s2; out[3] = v.s3;
    out[4] = v.s4; out[5] = v.s5; out[6] = v.s6; out[7] = v.s7;
}
#else
#define BINV_VW 8
/* One 16-byte load; each bf16 widened in registers (no private array). */
inline void binv_load_vec(__global const binv_t *p, ulong idx, float *out) {
    const uint4 u = *(__global const uint4 *)(p + idx);
    out[0] = as_float(u.s0 << 16); out[1] = as_float(u.s0 & 0xffff0000u);
    out[2] = as_float(u.s1 << 16); out[3] = as_float(u.s1 & 0xffff0000u);
    out[4] = as_float(u.s2 << 16); out[5] = as_float(u.s2 & 0xffff0000u);
    out[6] = as_float(u.s3 << 16); out[7] = as_float(u.s3 & 0xffff0000u);
}
#endif

/* ---- Elementary functions from +, *, fma and correctly rounded / only ----
 * Built-in exp/log/rsqrt are not correctly rounded and differ between
 * devices; these give the same bits everywhere (rint and the bit moves are
 * exact operations).  Accuracy (tests/test_rows.c checks it against double
 * precision over the float range): binv_exp <= 2 ulp, binv_log <= 2 ulp. */

/* e^x: x = n ln2 + r (Cody-Waite, |r| <= ln2/2), e^r by its degree-7 Taylor
 * polynomial (truncation < 0.1 ulp), then * 2^n in two exact steps so that
 * results in the subnormal range round once. */
inline float binv_exp(float x) {
    if (isnan(x)) return x;
    if (x > 88.72283935546875f) return INFINITY;
    if (x < -103.972084045410156f) return 0.0f;
    const float n = rint(x * 1.44269502162933350f);
    float r = fma(n, -0.693145751953125f, x);  /* ln2_hi: n*ln2_hi is exact */
    r = fma(n, -1.42860682030941723e-6f, r);    /* ln2_lo */
    float p = 1.98412698e-4f;
    p = fma(p, r, 1.38888889e-3f);
    p = fma(p, r, 8.33333333e-3f);
    p = fma(p, r, 4.16666667e-2f);
    p = fma(p, r, 1.66666667e-1f);
    p = fma(p, r, 0.5f);
    p = fma(p, r, 1.0f);
    p = fma(p, r, 1.0f);
    const int ni = (int)n, n1 = ni / 2, n2 = ni - n1;
    return (p * as_float((uint)(n1 + 127) << 23)) * as_float((uint)(n2 + 127) << 23);
}

/* ln x: x = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
 * s = (m-1)/(m+1), series to s^9 (truncation < 0.05 ulp). */
inline float binv_log(float x) {
    if (isnan(x)) return x;
    if (x < 0.0f) return NAN;
    if (x == 0.0f) return -INFINITY;
    if (isinf(x)) return x;
    int e = 0;
    if (x < 1.17549435e-38f) { /* subnormal: scale by 2^24 (exact) */
        x *= 16777216.0f;
        e = -24;
    }
    const uint u = as_uint(x);
    e += (int)((u >> 23) & 0xffu) - 127;
    float m = as_float((u & 0x7fffffu) | 0x3f800000u);
    if (m > 1.41421356f) {
        m *= 0.5f; /* exact */
        e += 1;
    }
    const float f = m - 1.0f; /* exact (Sterbenz) */
    const float s = f / (2.0f + f);
    const float z = s * s;
    float R = 2.22222222e-1f;
    R = fma(R, z, 2.85714286e-1f);
    R = fma(R, z, 4.0e-1f);
    R = fma(R, z, 6.66666667e-1f);
    R = R * z;
    const float l1p = fma(s, R, 2.0f * s); /* 2s exact */
    const float fe = (float)e;
    return fma(fe, 0.693145751953125f, fma(fe, 1.42860682030941723e-6f, l1p));
}

/* 1/sqrt(x) from the correctly rounded sqrt and division (two roundings). */
inline float binv_rsqrt(float x) { return 1.0f / sqrt(x); }

/* x rounded to the storage dtype (what a store then a load gives). */
inline float binv_round_dtype(float x) {
#if BINV_DTYPE == 1
    return x;
#elif BINV_DTYPE == 2
    ushort h; /* half storage without cl_khr_fp16: through a pointer cast */
    vstore_half_rte(x, 0, (half *)&h);
    return vload_half(0, (const half *)&h);
#else
    return binv_bf16_to_f32(binv_f32_to_bf16(x));
#endif
}
