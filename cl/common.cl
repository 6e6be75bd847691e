/* common.cl — shared by every kernel family of libbinv-cl.
 *
 * Floating-point rules (the portable-bits contract):
 *  - FP_CONTRACT OFF: no compiler may fuse a*b+c; every fused multiply-add
 *    in the library is an explicit fma(), every other product and sum is a
 *    separately rounded * or +.
 *  - Built without fast-math or mad-enable.  Division and square root are
 *    correctly rounded: the driver's / and sqrt where the device advertises
 *    CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT (the host then builds with
 *    -cl-fp32-correctly-rounded-divide-sqrt), binv_div and binv_sqrt below
 *    otherwise (the host defines BINV_SOFT_DIVSQRT=1).  Kernels write every
 *    f32 division and square root as BINV_DIV / BINV_SQRT; a correctly
 *    rounded result is unique, so both give the same bits.
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

/* ---- Correctly rounded division and square root from +, * and fma ----
 * For devices without correctly rounded / and sqrt.  Only fma (which OpenCL
 * requires correctly rounded), * and + and exact integer bit operations are
 * used.  The operands are reduced to significands in [1, 2) (or [1, 4)) by
 * bit operations, so that every floating-point intermediate is a normal
 * number far from underflow and overflow: the results do not depend on
 * whether the device flushes subnormals.  Exponents and the final rounding
 * into the subnormal range are integer work.  Each routine gets a result
 * within one ulp (reciprocal / reciprocal square root by Newton's method,
 * one Markstein correction), then decides the last bit exactly from the signs
 * of fma residuals (Markstein / Tuckerman tests), whose signs are exact. */

/* |x| = m * 2^e for finite nonzero x with sign cleared (bits u); returns m in
 * [1, 2).  Subnormals are normalised by clz (integer, exact). */
inline float binv_split_(uint u, int *e) {
    if ((u >> 23) == 0) {
        const uint z = clz(u) - 8u; /* shift that brings the leading 1 to bit 23 */
        u <<= z;
        *e = -126 - (int)z;
    } else {
        *e = (int)(u >> 23) - 127;
    }
    return as_float((u & 0x7fffffu) | 0x3f800000u);
}

/* sign | q * 2^k rounded to the float grid, where q in [0.5, 2] is the exact
 * value Q rounded to 24 bits and rs the sign of Q - q (-1, 0, +1).  Below
 * 2^-126 the grid is coarser: rounding q again gives the rounding of Q except
 * when q is exactly halfway between two subnormals (a midpoint of the coarse
 * grid is a 24-bit number), where rs says on which side Q lies. */
inline float binv_compose_(uint sign, float q, int k, int rs) {
    const uint qb = as_uint(q);
    const int e = (int)(qb >> 23) - 127 + k;
    if (e > 127) return as_float(sign | 0x7f800000u);
    const uint m = (qb & 0x7fffffu) | 0x800000u;
    if (e >= -126) return as_float(sign | ((uint)(e + 127) << 23) | (m & 0x7fffffu));
    const int s = -126 - e; /* bits dropped: m * 2^-s units of 2^-149 */
    if (s > 25) return as_float(sign); /* below a quarter of the smallest subnormal */
    const uint base = m >> s, rem = m & ((1u << s) - 1u), mid = 1u << (s - 1);
    const uint up = rem > mid || (rem == mid && (rs > 0 || (rs == 0 && (base & 1u))));
    return as_float(sign | (base + up)); /* base + up == 2^23: the smallest normal */
}

/* a / b, correctly rounded (round to nearest even), IEEE special cases. */
inline float binv_div(float a, float b) {
    const uint ua = as_uint(a), ub = as_uint(b);
    const uint sign = (ua ^ ub) & 0x80000000u;
    const uint xa = ua & 0x7fffffffu, xb = ub & 0x7fffffffu;
    if (xa > 0x7f800000u || xb > 0x7f800000u) return a + b; /* NaN in, NaN out */
    if (xa == 0x7f800000u) return xb == 0x7f800000u ? NAN : as_float(sign | 0x7f800000u);
    if (xb == 0x7f800000u) return as_float(sign);
    if (xb == 0u) return xa == 0u ? NAN : as_float(sign | 0x7f800000u);
    if (xa == 0u) return as_float(sign);
    int ea, eb;
    const float ma = binv_split_(xa, &ea), mb = binv_split_(xb, &eb);
    /* y ~ 1/mb: linear start 24/17 - 8/17 mb (relative error <= 1/17), three
     * Newton steps (error squared each: about 1e-10, then float rounding). */
    float y = fma(mb, -0.470588235294f, 1.41176470588f);
    float t = fma(-mb, y, 1.0f);
    y = fma(y, t, y);
    t = fma(-mb, y, 1.0f);
    y = fma(y, t, y);
    t = fma(-mb, y, 1.0f);
    y = fma(y, t, y);
    /* q within one ulp of Q = ma/mb (Q in (0.5, 2)). */
    float q = ma * y;
    float r = fma(-q, mb, ma);
    q = fma(r, y, q);
    /* The residual of a q within one ulp is exact; Q lies above q + u/2 iff
     * r - mb u/2 > 0 (exact sign of one fma).  No tie is possible here
     * (a 25-bit midpoint times a 24-bit mb is not a 24-bit ma). */
    r = fma(-q, mb, ma);
    if (r > 0.0f) {
        const float u = q < 1.0f ? 0x1.0p-24f : 0x1.0p-23f; /* ulp above q */
        if (fma(-0.5f * u, mb, r) > 0.0f) q += u;
    } else if (r < 0.0f) {
        const float u = q <= 1.0f ? 0x1.0p-24f : 0x1.0p-23f; /* ulp below q */
        if (fma(0.5f * u, mb, r) < 0.0f) q -= u;
    }
    r = fma(-q, mb, ma); /* sign of Q - q for a rounding into the subnormals */
    return binv_compose_(sign, q, ea - eb, r > 0.0f ? 1 : r < 0.0f ? -1 : 0);
}

/* sqrt(x), correctly rounded, IEEE special cases (sqrt(-0) = -0). */
inline float binv_sqrt(float x) {
    const uint ux = as_uint(x), ax = ux & 0x7fffffffu;
    if (ax == 0u) return x;
    if (ax > 0x7f800000u) return x + x; /* NaN */
    if (ux & 0x80000000u) return NAN;
    if (ux == 0x7f800000u) return x;
    int e;
    float m = binv_split_(ux, &e);
    if (e & 1) { /* m in [1, 4), e even */
        m *= 2.0f;
        e -= 1;
    }
    /* y ~ 1/sqrt(m): bit-pattern start (relative error < 0.035), three
     * Newton steps y (3/2 - m y^2 / 2) (about 1e-10, then float rounding). */
    const float hm = 0.5f * m;
    float y = as_float(0x5f3759dfu - (as_uint(m) >> 1));
    y = y * fma(-hm * y, y, 1.5f);
    y = y * fma(-hm * y, y, 1.5f);
    y = y * fma(-hm * y, y, 1.5f);
    /* s within one ulp of sqrt(m) in [1, 2). */
    float s = m * y;
    s = fma(fma(-s, s, m), 0.5f * y, s);
    /* Tuckerman's test: sqrt(m) > s + u/2 iff m > s (s + u), and sqrt(m) <
     * s - u/2 iff m <= s (s - u), because m and s (s +- u) are multiples of
     * 2^-46 and u^2/4 = 2^-48 (s in (1, 2), u = 2^-23).  Each sign is that of
     * one fma.  No tie is possible (a 25-bit midpoint squared is not a
     * 24-bit m).  At s = 1 the lower test never fires (m >= 1). */
    const float uu = s < 2.0f ? 0x1.0p-23f : 0x1.0p-22f, ud = s <= 1.0f ? 0x1.0p-24f : 0x1.0p-23f;
    if (fma(-s, s + uu, m) > 0.0f)
        s += uu;
    else if (fma(-s, s - ud, m) <= 0.0f)
        s -= ud;
    return as_float(as_uint(s) + (uint)((e / 2) * (1 << 23)));
}

#if defined(BINV_SOFT_DIVSQRT) && BINV_SOFT_DIVSQRT
#define BINV_DIV(a, b) binv_div((a), (b))
#define BINV_SQRT(x) binv_sqrt(x)
#else
#define BINV_DIV(a, b) ((a) / (b))
#define BINV_SQRT(x) sqrt(x)
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
    const float s = BINV_DIV(f, 2.0f + f);
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
inline float binv_rsqrt(float x) { return BINV_DIV(1.0f, BINV_SQRT(x)); }

/* ---- sin / cos from +, *, fma (same bits everywhere) ----
 * a = k*pi/2 + r with k = rint(a * 2/pi) and pi/2 = C1 + C2 + C3 (C1 the
 * float nearest pi/2): fma computes k*C1 exactly and a - k*C1 is a multiple
 * of 2^-23 of magnitude < 2, hence exact, for |k| < 2^22; the next two steps
 * round once each.  |r| <= pi/4 (+ a rounding); minimax polynomials of
 * cephes' sinf/cosf.  Absolute error < 3e-7 for |a| < 2^21 (tests check). */
inline void binv_sincos(float a, float *s, float *c) {
    const float k = rint(a * 0.636619746685028076f);
    float r = fma(k, -1.57079637050628662f, a);
    r = fma(k, 4.37113882867379300e-8f, r);
    r = fma(k, 1.71512451000588190e-15f, r);
    const float z = r * r;
    float ps = -1.9515295891e-4f;
    ps = fma(ps, z, 8.3321608736e-3f);
    ps = fma(ps, z, -1.6666654611e-1f);
    const float sr = fma(ps * z, r, r);
    float pc = 2.443315711809948e-5f;
    pc = fma(pc, z, -1.388731625493765e-3f);
    pc = fma(pc, z, 4.166664568298827e-2f);
    const float cr = fma(pc * z, z, fma(-0.5f, z, 1.0f));
    const int q = ((int)k) & 3;
    float sv = (q & 1) ? cr : sr, cv = (q & 1) ? sr : cr;
    if (q == 1 || q == 2) cv = -cv;
    if (q >= 2) sv = -sv;
    *s = sv;
    *c = cv;
}

/* RoPE's rotation of one interleaved pair, the one place of its arithmetic
 * (binv_rope and its fusions through cl/attention.cl's attn_rope_pair,
 * binv_rope_backward through cl/activation_backward.cl): pair e of a row of
 * heads*hd elements (head e / (hd/2), i = e % (hd/2)), angle
 * a = (float)pos * freq[i], read from src[sb + ...] and stored (rounded to
 * the dtype) at dst[db + ...]; src and dst may be the same.  freq[i] =
 * theta^(-2i/D) rounded to float (a table the host computes once per
 * (theta, D), see src/attention.c).  inverse = 0: the rotation by a; 1: by
 * -a, with sin(-a) = -sin(a) (an exact negation of the same s, so both
 * directions use the bits of one sin/cos):
 *   x0' = x0*c - x1*s,  x1' = x0*s + x1*c   (s negated for inverse). */
inline void binv_rope_pair(__global const binv_t *src, ulong sb, __global binv_t *dst, ulong db,
                           uint e, uint hd, uint pos, __global const float *freq, int inverse) {
    const uint half_d = hd / 2;
    const uint h = e / half_d, i = e % half_d;
    const float ang = (float)pos * freq[i];
    float s, c;
    binv_sincos(ang, &s, &c);
    if (inverse) s = -s;
    const ulong off = (ulong)h * hd + 2 * i;
    const float x0 = BINV_LOAD(src, sb + off), x1 = BINV_LOAD(src, sb + off + 1);
    BINV_STORE(dst, db + off, x0 * c - x1 * s);
    BINV_STORE(dst, db + off + 1, x0 * s + x1 * c);
}

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
