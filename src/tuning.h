/* Tuning and testing knobs: the BINV_* environment variables, parsed once
 * when a context is created (src/tuning.c) and held by the context.  None of
 * them changes a bit of any output: they choose kernels, tile shapes and
 * launch counts.  docs/tuning.md lists every knob.  Not installed. */
#ifndef BINV_TUNING_H
#define BINV_TUNING_H

#include <stddef.h>

/* Forced GEMM path for tests (BINV_GEMM_PATH=skinny|splitk|tiled|stream). */
typedef enum { BINV_GEMM_PATH_AUTO = 0, BINV_GEMM_PATH_SKINNY, BINV_GEMM_PATH_SPLITK,
               BINV_GEMM_PATH_TILED, BINV_GEMM_PATH_STREAM } binv_gemm_path;

/* Each field holds a value that passed the checks that do not depend on the
 * device; `set` = 0 means "not given (or invalid): the library's choice".
 * Checks against the device's work-group size and local memory, and against
 * the call, are made where the value is used. */
typedef struct binv_tuning {
    int debug;                /* BINV_DEBUG: messages on stderr */
    binv_gemm_path gemm_path; /* BINV_GEMM_PATH */
    int rows_path;            /* BINV_ROWS_PATH: 0 automatic, 1 fused, 2 split */
    int attn_path;            /* BINV_ATTN_PATH: 0 automatic, 1 fused, 2 split */
    int soft_divsqrt;         /* BINV_SOFT_DIVSQRT: software / and sqrt on any device */
    int gemm_unfused;         /* BINV_GEMM_FUSE=0: split-K combines in a second launch */
    int gemm_no_nt;           /* BINV_GEMM_NT=0: gemm_tiled, never gemm_tiled_nt */
    int gemm_tglob;           /* BINV_GEMM_TGLOB: -1 the library's choice, 0 or 1 */
    size_t gemm_small_m;      /* BINV_GEMM_SMALL_M: largest m of the small-m kernels */
    struct { int set; unsigned bm, bn, bk, rm, rn; } gemm_tile;   /* BINV_GEMM_TILE */
    struct { int set; unsigned sn, smr, sk; } gemm_skinny;         /* BINV_GEMM_SKINNY */
    struct { int set, has_tv; unsigned tn, tr, nc, tv; } gemm_stream; /* BINV_GEMM_STREAM */
    size_t native_small_m;    /* BINV_NATIVE_SMALL_M: largest m of gemm_native_stream */
    struct { int set; unsigned swp, sst, sks; } native_stream;     /* BINV_NATIVE_STREAM */
    int native_no_wgmma;      /* BINV_NATIVE_WGMMA=0 */
    int native_wg_given;      /* BINV_NATIVE_WG present at all (valid or not): a failed
                                 sm_90a build is then an error, not a silent fallback */
    struct { int set; unsigned v[8]; } native_wg;                  /* BINV_NATIVE_WG */
    int native_no_ldm;        /* BINV_NATIVE_LDM=0: plain local loads, no ldmatrix */
    struct { int set; unsigned nj, wgm, wgn, swz; } native_shape;  /* BINV_NATIVE_SHAPE */
    struct { int set; int gb, tb, j, wg; } attn_shape;             /* BINV_ATTN_SHAPE */
    char extra_defines[1024]; /* BINV_EXTRA_DEFINES: appended to every program's options */
} binv_tuning;

/* Every knob at the library's choice. */
void binv_tuning_defaults(binv_tuning *t);
/* Defaults, then every BINV_* variable of the environment (the only place
 * the library reads its environment). */
void binv_tuning_from_env(binv_tuning *t);
/* Sets one knob as if its environment variable held `value` (the same
 * syntax and checks; an invalid value gives the library's choice).  0, or -1
 * for a name that is not a knob.  Tests use it with
 * binv_context_create_tuned (src/internal.h) to force paths. */
int binv_tuning_set(binv_tuning *t, const char *name, const char *value);

#endif
