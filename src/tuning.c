/* The BINV_* knobs: one parser per variable, run once per context
 * (binv_context_create).  The only file of the library that reads the
 * environment.  Knobs, values and defaults: docs/tuning.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuning.h"

/* "1", "yes", ...: anything but "" and "0". */
static int flag_on(const char *v) { return *v && strcmp(v, "0") != 0; }

static void parse_debug(binv_tuning *t, const char *v) { t->debug = flag_on(v); }
static void parse_soft_divsqrt(binv_tuning *t, const char *v) { t->soft_divsqrt = flag_on(v); }
static void parse_gemm_fuse(binv_tuning *t, const char *v) { t->gemm_unfused = !strcmp(v, "0"); }
static void parse_gemm_nt(binv_tuning *t, const char *v) { t->gemm_no_nt = !strcmp(v, "0"); }
static void parse_native_wgmma(binv_tuning *t, const char *v) {
    t->native_no_wgmma = !strcmp(v, "0");
}
static void parse_native_ldm(binv_tuning *t, const char *v) { t->native_no_ldm = !strcmp(v, "0"); }

static void parse_gemm_path(binv_tuning *t, const char *v) {
    t->gemm_path = !strcmp(v, "skinny")   ? BINV_GEMM_PATH_SKINNY
                   : !strcmp(v, "splitk") ? BINV_GEMM_PATH_SPLITK
                   : !strcmp(v, "tiled")  ? BINV_GEMM_PATH_TILED
                   : !strcmp(v, "stream") ? BINV_GEMM_PATH_STREAM
                                          : BINV_GEMM_PATH_AUTO;
}

/* fused (1) | split (2); anything else automatic (0). */
static int fused_or_split(const char *v) {
    return !strcmp(v, "fused") ? 1 : !strcmp(v, "split") ? 2 : 0;
}
static void parse_rows_path(binv_tuning *t, const char *v) { t->rows_path = fused_or_split(v); }
static void parse_attn_path(binv_tuning *t, const char *v) { t->attn_path = fused_or_split(v); }

static void parse_gemm_tglob(binv_tuning *t, const char *v) {
    t->gemm_tglob = !strcmp(v, "0") ? 0 : !strcmp(v, "1") ? 1 : -1;
}

/* 1..1024; anything else (strtol's reading of it) the default 64. */
static void parse_gemm_small_m(binv_tuning *t, const char *v) {
    const long n = strtol(v, NULL, 10);
    t->gemm_small_m = n > 0 && n <= 1024 ? (size_t)n : 64;
}

/* 0..64 as a whole decimal number, else the default 64 (above 64 the kernel
 * would need more than 4 m16 tiles). */
static void parse_native_small_m(binv_tuning *t, const char *v) {
    char *end = NULL;
    const long n = strtol(v, &end, 10);
    t->native_small_m = end != v && *end == '\0' && n >= 0 && n <= 64 ? (size_t)n : 64;
}

/* "BM,BN,BK,RM,RN": whole register blocks of 4 x 4 that divide the tile. */
static void parse_gemm_tile(binv_tuning *t, const char *v) {
    unsigned bm, bn, bk, rm, rn;
    memset(&t->gemm_tile, 0, sizeof t->gemm_tile); /* invalid: as if unset */
    t->gemm_tile.set = sscanf(v, "%u,%u,%u,%u,%u", &bm, &bn, &bk, &rm, &rn) == 5 && rm && rn &&
                       bk && rm % 4 == 0 && rn % 4 == 0 && bm % rm == 0 && bn % rn == 0;
    if (t->gemm_tile.set) {
        t->gemm_tile.bm = bm; t->gemm_tile.bn = bn; t->gemm_tile.bk = bk;
        t->gemm_tile.rm = rm; t->gemm_tile.rn = rn;
    }
}

/* "SN,SMR,SK": 32..1024 columns, 1..32 rows, steps of a multiple of 8. */
static void parse_gemm_skinny(binv_tuning *t, const char *v) {
    unsigned sn, smr, sk;
    memset(&t->gemm_skinny, 0, sizeof t->gemm_skinny); /* invalid: as if unset */
    t->gemm_skinny.set = sscanf(v, "%u,%u,%u", &sn, &smr, &sk) == 3 && sn >= 32 && sn <= 1024 &&
                         smr >= 1 && smr <= 32 && sk >= 8 && sk % 8 == 0;
    if (t->gemm_skinny.set) {
        t->gemm_skinny.sn = sn; t->gemm_skinny.smr = smr; t->gemm_skinny.sk = sk;
    }
}

/* "TN,TR,NC[,TV]": NC 1..16 columns per item, TN a multiple of 8 NC up to
 * 1024, TR 1..32 rows, TV 1..32 vectors per step (absent: the default's). */
static void parse_gemm_stream(binv_tuning *t, const char *v) {
    unsigned tn, tr, nc, tv = 1;
    const int got = sscanf(v, "%u,%u,%u,%u", &tn, &tr, &nc, &tv);
    memset(&t->gemm_stream, 0, sizeof t->gemm_stream); /* invalid: as if unset */
    t->gemm_stream.set = got >= 3 && nc >= 1 && nc <= 16 && tn <= 1024 && tn >= 8 * nc &&
                         tn % (8 * nc) == 0 && tr >= 1 && tr <= 32 && tv >= 1 && tv <= 32;
    if (t->gemm_stream.set) {
        t->gemm_stream.tn = tn; t->gemm_stream.tr = tr; t->gemm_stream.nc = nc;
        t->gemm_stream.has_tv = got == 4;
        if (got == 4) t->gemm_stream.tv = tv;
    }
}

/* "SWP,SST,SKS": 1, 2 or 4 warps, 2..16 stages of 64..512 k (multiple of 32). */
static void parse_native_stream(binv_tuning *t, const char *v) {
    unsigned a1, a2, a3;
    memset(&t->native_stream, 0, sizeof t->native_stream); /* invalid: as if unset */
    t->native_stream.set = sscanf(v, "%u,%u,%u", &a1, &a2, &a3) == 3 &&
                           (a1 == 1 || a1 == 2 || a1 == 4) && a2 >= 2 && a2 <= 16 && a3 >= 64 &&
                           a3 <= 512 && a3 % 32 == 0;
    if (t->native_stream.set) {
        t->native_stream.swp = a1; t->native_stream.sst = a2; t->native_stream.sks = a3;
    }
}

/* "WKS,WNW,WWM,WST,WN,WGW,R[,G]" (src/gemm_native.c, native_wg_program).
 * The copy plan (wg_copy) needs its row stride, 128 WNW / (WKS / 8), to
 * divide both tiles' rows; WWM x WN <= 256 accumulators per work-item. */
static void parse_native_wg(binv_tuning *t, const char *v) {
    unsigned u[8] = {0};
    t->native_wg_given = 1;
    memset(&t->native_wg, 0, sizeof t->native_wg); /* invalid: as if unset */
    t->native_wg.set =
        sscanf(v, "%u,%u,%u,%u,%u,%u,%u,%u", &u[0], &u[1], &u[2], &u[3], &u[4], &u[5], &u[6],
               &u[7]) >= 7 &&
        (u[0] == 16 || u[0] == 32 || u[0] == 64) && (u[1] == 1 || u[1] == 2) &&
        (u[2] == 1 || u[2] == 2) && u[3] >= 2 + u[5] && u[3] <= 8 &&
        (u[4] == 64 || u[4] == 128 || u[4] == 256) && u[2] * u[4] <= 256 && u[5] <= 1 &&
        u[6] >= 1 && u[6] <= 32 && (64 * u[1] * u[2]) % (128 * u[1] / (u[0] / 8)) == 0 &&
        u[4] % (128 * u[1] / (u[0] / 8)) == 0;
    if (t->native_wg.set) memcpy(t->native_wg.v, u, sizeof u);
}

/* "NJ,WGM,WGN[,SWZ]": NJ 2..8 even, WGM 1..4 dividing NJ, WGN dividing 8,
 * SWZ 0 or 1 (default 0). */
static void parse_native_shape(binv_tuning *t, const char *v) {
    unsigned a1, a2, a3, a4 = 0;
    memset(&t->native_shape, 0, sizeof t->native_shape); /* invalid: as if unset */
    t->native_shape.set = sscanf(v, "%u,%u,%u,%u", &a1, &a2, &a3, &a4) >= 3 && a1 >= 2 &&
                          a1 <= 8 && a1 % 2 == 0 && a2 >= 1 && a2 <= 4 && a1 % a2 == 0 &&
                          a3 >= 1 && 8 % a3 == 0 && a4 <= 1;
    if (t->native_shape.set) {
        t->native_shape.nj = a1; t->native_shape.wgm = a2;
        t->native_shape.wgn = a3; t->native_shape.swz = a4;
    }
}

/* "gb,tb,j,wg": each >= 1 (the group size must also divide the call's). */
static void parse_attn_shape(binv_tuning *t, const char *v) {
    int gb, tb, j, wg;
    memset(&t->attn_shape, 0, sizeof t->attn_shape); /* invalid: as if unset */
    t->attn_shape.set = sscanf(v, "%d,%d,%d,%d", &gb, &tb, &j, &wg) == 4 && gb >= 1 && tb >= 1 &&
                        j >= 1 && wg >= 1;
    if (t->attn_shape.set) {
        t->attn_shape.gb = gb; t->attn_shape.tb = tb; t->attn_shape.j = j; t->attn_shape.wg = wg;
    }
}

/* Kept whole up to the options' own limit (src/program.c refuses longer
 * option strings, so a cut one fails the same way). */
static void parse_extra_defines(binv_tuning *t, const char *v) {
    snprintf(t->extra_defines, sizeof t->extra_defines, "%s", v);
}

static const struct {
    const char *name;
    void (*parse)(binv_tuning *t, const char *value);
} KNOBS[] = {
    {"BINV_DEBUG", parse_debug},
    {"BINV_SOFT_DIVSQRT", parse_soft_divsqrt},
    {"BINV_EXTRA_DEFINES", parse_extra_defines},
    {"BINV_GEMM_PATH", parse_gemm_path},
    {"BINV_GEMM_FUSE", parse_gemm_fuse},
    {"BINV_GEMM_SMALL_M", parse_gemm_small_m},
    {"BINV_GEMM_TILE", parse_gemm_tile},
    {"BINV_GEMM_TGLOB", parse_gemm_tglob},
    {"BINV_GEMM_NT", parse_gemm_nt},
    {"BINV_GEMM_SKINNY", parse_gemm_skinny},
    {"BINV_GEMM_STREAM", parse_gemm_stream},
    {"BINV_NATIVE_SMALL_M", parse_native_small_m},
    {"BINV_NATIVE_STREAM", parse_native_stream},
    {"BINV_NATIVE_WGMMA", parse_native_wgmma},
    {"BINV_NATIVE_WG", parse_native_wg},
    {"BINV_NATIVE_LDM", parse_native_ldm},
    {"BINV_NATIVE_SHAPE", parse_native_shape},
    {"BINV_ROWS_PATH", parse_rows_path},
    {"BINV_ATTN_PATH", parse_attn_path},
    {"BINV_ATTN_SHAPE", parse_attn_shape},
};

void binv_tuning_defaults(binv_tuning *t) {
    memset(t, 0, sizeof *t);
    t->gemm_path = BINV_GEMM_PATH_AUTO;
    t->gemm_tglob = -1;
    t->gemm_small_m = 64;
    t->native_small_m = 64;
}

int binv_tuning_set(binv_tuning *t, const char *name, const char *value) {
    for (size_t i = 0; i < sizeof KNOBS / sizeof *KNOBS; i++)
        if (!strcmp(KNOBS[i].name, name)) {
            KNOBS[i].parse(t, value ? value : "");
            return 0;
        }
    return -1;
}

void binv_tuning_from_env(binv_tuning *t) {
    binv_tuning_defaults(t);
    for (size_t i = 0; i < sizeof KNOBS / sizeof *KNOBS; i++) {
        const char *v = getenv(KNOBS[i].name);
        if (v) KNOBS[i].parse(t, v);
    }
}
