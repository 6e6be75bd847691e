/* Host helpers of the harness: storage conversions, rng and fillers, ulp
 * distance, FNV hashing, clock. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t hx_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double hx_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

size_t hx_dtype_size(binv_dtype dt) { return dt == BINV_DTYPE_F32 ? 4 : 2; }

const char *hx_dtype_name(binv_dtype dt) {
    return dt == BINV_DTYPE_F32 ? "f32" : dt == BINV_DTYPE_F16 ? "f16" : "bf16";
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(binv_dtype dt, const void *src, size_t i) {
    if (dt == BINV_DTYPE_F32) {
        uint32_t u;
        memcpy(&u, (const unsigned char *)src + 4 * i, 4);
        return u;
    }
    uint16_t h;
    memcpy(&h, (const unsigned char *)src + 2 * i, 2);
    return h;
}

float hx_load(binv_dtype dt, const void *src, size_t i) {
    uint32_t h = bits_of(dt, src, i);
    if (dt == BINV_DTYPE_F32) return f32_from_bits(h);
    if (dt == BINV_DTYPE_BF16) return f32_from_bits(h << 16);
    uint32_t sign = (h >> 15) << 31, e = (h >> 10) & 31, m = h & 0x3ff;
    if (e == 31) return f32_from_bits(sign | 0x7f800000u | m << 13);
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = (float)m * f32_from_bits(0x33800000u);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | (e + 112) << 23 | m << 13);
}

/* f32 -> f16 bits, round to nearest even, subnormals and overflow included. */
static uint16_t f16_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t sign = (u >> 16) & 0x8000u, ab = u & 0x7fffffffu;
    if (ab > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);     /* NaN */
    if (ab >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);    /* rounds to inf */
    if (ab < 0x38800000u) {                                      /* f16 subnormal or 0 */
        /* value / 2^-24, rounded to nearest even integer, as f32 arithmetic. */
        float a = f32_from_bits(ab) * 16777216.0f;               /* exact: scales by 2^24 */
        float r = a + 8388608.0f - 8388608.0f;                   /* RNE to integer (a < 2^10) */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t e = ((ab >> 23) - 112) << 10, m = (ab >> 13) & 0x3ffu, rem = ab & 0x1fffu;
    uint32_t r = e | m;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

void hx_store(binv_dtype dt, void *dst, size_t i, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if (dt == BINV_DTYPE_F32) {
        memcpy((unsigned char *)dst + 4 * i, &u, 4);
        return;
    }
    uint16_t h;
    if (dt == BINV_DTYPE_BF16) {
        if ((u & 0x7fffffffu) > 0x7f800000u) h = (uint16_t)((u >> 16) | 0x40u);
        else h = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
        h = f16_bits(v);
    }
    memcpy((unsigned char *)dst + 2 * i, &h, 2);
}

/* Maps bits to a line where adjacent representable values are adjacent
 * integers and -0 == +0. */
static int64_t ordered(binv_dtype dt, uint32_t b) {
    int bits = dt == BINV_DTYPE_F32 ? 32 : 16;
    uint32_t signbit = 1u << (bits - 1);
    int64_t mag = (int64_t)(b & (signbit - 1));
    return (b & signbit) ? -mag : mag;
}

static int is_nan(binv_dtype dt, uint32_t b) {
    if (dt == BINV_DTYPE_F32) return (b & 0x7fffffffu) > 0x7f800000u;
    if (dt == BINV_DTYPE_BF16) return (b & 0x7fffu) > 0x7f80u;
    return (b & 0x7fffu) > 0x7c00u;
}

double hx_ulp_distance(binv_dtype dt, const void *a, const void *b, size_t i) {
    uint32_t x = bits_of(dt, a, i), y = bits_of(dt, b, i);
    if (is_nan(dt, x) || is_nan(dt, y)) return is_nan(dt, x) && is_nan(dt, y) ? 0.0 : INFINITY;
    int64_t d = ordered(dt, x) - ordered(dt, y);
    return (double)(d < 0 ? -d : d);
}

hx_diff hx_compare(binv_dtype dt, const void *ref, const void *x, size_t n) {
    hx_diff r = {0, 0, 0};
    size_t es = hx_dtype_size(dt);
    for (size_t i = 0; i < n; i++) {
        if (memcmp((const unsigned char *)ref + i * es, (const unsigned char *)x + i * es, es) == 0)
            continue;
        r.differing++;
        double a = hx_load(dt, ref, i), b = hx_load(dt, x, i);
        double d = (isnan(a) || isnan(b)) ? INFINITY : fabs(a - b);
        if (isnan(d)) d = INFINITY; /* inf - inf of equal sign cannot reach here: bits differ */
        if (d > r.max_abs) r.max_abs = d;
        double u = hx_ulp_distance(dt, ref, x, i);
        if (u > r.max_ulp) r.max_ulp = u;
    }
    return r;
}

uint64_t hx_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int hx_hashset_add(hx_hashset *s, const void *data, size_t n) {
    uint64_t h = hx_hash(data, n);
    for (int i = 0; i < s->count; i++)
        if (s->h[i] == h) return 0;
    if (s->count == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        uint64_t *nh = realloc(s->h, (size_t)cap * sizeof *nh);
        if (!nh) return 0;
        s->h = nh;
        s->cap = cap;
    }
    s->h[s->count++] = h;
    return 1;
}

void hx_hashset_free(hx_hashset *s) {
    free(s->h);
    s->h = NULL;
    s->count = s->cap = 0;
}

size_t hx_batch_sizes(size_t max, size_t *out, size_t cap) {
    size_t n = 0;
    for (size_t b = 1; b <= max && n < cap; b = b < 4 ? b + 1 : b * 2) out[n++] = b;
    return n;
}

static void put(binv_dtype dt, void *out, size_t i, uint32_t bits) {
    if (dt == BINV_DTYPE_F32) {
        memcpy((unsigned char *)out + 4 * i, &bits, 4);
    } else {
        const uint16_t h = (uint16_t)bits;
        memcpy((unsigned char *)out + 2 * i, &h, 2);
    }
}

void hx_fill_wide(binv_dtype dt, void *out, size_t count, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < count; i++) {
        uint64_t r = hx_rng_next(&s);
        uint32_t sign = (uint32_t)(r >> 63);
        int e = (int)((r >> 40) % 17) - 8; /* exponent -8 .. 8 */
        uint32_t mant = (uint32_t)r;
        uint32_t bits;
        if (dt == BINV_DTYPE_F32)
            bits = sign << 31 | (uint32_t)(127 + e) << 23 | (mant & 0x7fffffu);
        else if (dt == BINV_DTYPE_F16) /* keep within f16's normal range */
            bits = sign << 15 | (uint32_t)(15 + e / 2) << 10 | (mant & 0x3ffu);
        else
            bits = sign << 15 | (uint32_t)(127 + e) << 7 | (mant & 0x7fu);
        put(dt, out, i, bits);
    }
}

void hx_fill_pow2(binv_dtype dt, void *out, size_t count, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < count; i++) {
        uint64_t r = hx_rng_next(&s);
        int e = (int)(r % 3); /* 1, 2, 4: products and sums are small integers */
        uint32_t sign = (uint32_t)(r >> 63);
        uint32_t bits;
        if ((r >> 8) % 5 == 0) bits = 0;
        else if (dt == BINV_DTYPE_F32) bits = sign << 31 | (uint32_t)(127 + e) << 23;
        else if (dt == BINV_DTYPE_F16) bits = sign << 15 | (uint32_t)(15 + e) << 10;
        else bits = sign << 15 | (uint32_t)(127 + e) << 7;
        put(dt, out, i, bits);
    }
}

void hx_fill_unit(binv_dtype dt, void *out, size_t count, uint64_t *seed) {
    const uint32_t mant = dt == BINV_DTYPE_F32 ? 0x7fffffu : dt == BINV_DTYPE_F16 ? 0x3ffu : 0x7fu;
    unsigned char *store = out;
    for (size_t i = 0; i < count; i++) {
        int32_t r = (int32_t)(hx_rng_next(seed) >> 40) - (1 << 23); /* [-2^23, 2^23) */
        hx_store(dt, store, i, r ? (float)r * 0x1p-23f : 0.3671875f);
        /* The low mantissa bit is the lowest bit of the storage word. */
        if (dt == BINV_DTYPE_F32) {
            uint32_t u;
            memcpy(&u, store + 4 * i, 4);
            if ((u & mant) == 0) u |= 1u;
            memcpy(store + 4 * i, &u, 4);
        } else {
            uint16_t h;
            memcpy(&h, store + 2 * i, 2);
            if ((h & mant) == 0) h |= 1u;
            memcpy(store + 2 * i, &h, 2);
        }
    }
}
