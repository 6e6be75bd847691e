/* The problem file test_gemm hands to clblast_probe: this header, then A, B
 * and C as f32 (a_elems, b_elems, c_elems values), all in host byte order
 * (the two programs are built together and run on the same machine). */
#ifndef BINV_TESTS_CLBLAST_PROBE_H
#define BINV_TESTS_CLBLAST_PROBE_H

#include <stdint.h>

#define CLBLAST_PROBE_MAGIC 0x62636c70u /* "bclp" */
#define CLBLAST_PROBE_MAX_ELEMS ((uint64_t)1 << 26)

typedef struct clblast_probe_header {
    uint32_t magic;
    uint32_t ta, tb; /* 0: no transpose, 1: transpose */
    uint32_t pad;
    uint64_t m, n, k, lda, ldb, ldc;
    uint64_t a_elems, b_elems, c_elems;
    float alpha, beta;
} clblast_probe_header;

#endif
