/* The study's measurements, separate from its I/O so that tests can check
 * them: storage conversions, diff and ulp distance, distinct-output counting. */
#ifndef BINV_TOOLS_STUDY_H
#define BINV_TOOLS_STUDY_H

#include <stddef.h>
#include <stdint.h>

#include "binv/binv.h"

/* splitmix64: deterministic data, identical on every platform. */
uint64_t study_rng_next(uint64_t *state);
/* Monotonic wall clock in seconds. */
double study_now_s(void);

size_t study_dtype_size(binv_dtype dt);
const char *study_dtype_name(binv_dtype dt);
/* Element i of storage `src` as f32 (exact). */
float study_load(binv_dtype dt, const void *src, size_t i);
/* Stores v into element i of `dst`, rounded to nearest even (NaN stays NaN). */
void study_store(binv_dtype dt, void *dst, size_t i, float v);

/* Distance in units in the last place of the storage dtype between two
 * values of that dtype: the number of representable values from a to b
 * (+0 and -0 are 0 apart).  NaN against non-NaN counts as infinity. */
double study_ulp_distance(binv_dtype dt, const void *a, const void *b, size_t i);

typedef struct study_diff {
    double max_abs; /* max |a_i - b_i| in f64 (inf if one side is NaN/inf and differs) */
    double max_ulp; /* max ulp distance */
    size_t differing; /* elements whose bits differ */
} study_diff;
study_diff study_compare(binv_dtype dt, const void *ref, const void *x, size_t n);

/* A set of 64-bit FNV-1a hashes of byte strings, for counting distinct
 * outputs. */
typedef struct study_hashset {
    uint64_t *h;
    int count, cap;
} study_hashset;
uint64_t study_hash(const void *data, size_t n);
/* Adds the hash of data; returns 1 if it was new. */
int study_hashset_add(study_hashset *s, const void *data, size_t n);
void study_hashset_free(study_hashset *s);

/* The batch sizes of a sweep: 1, 2, 3, 4, then doubling, up to max (and at
 * most cap of them).  Returns how many were written. */
size_t study_batch_sizes(size_t max, size_t *out, size_t cap);

/* The chunk width a BINV_SCHEDULE_ADAPTIVE context uses for a row reduction
 * of `rows` rows of `cols` values on a device of `cus` compute units: the
 * rule written down in docs/schedules.md ("Adaptive"), copied here only so
 * that the report can say which widths the measured bits came from.  The
 * invariant width is binv_rows_chunk_size(), whatever rows is. */
size_t study_rows_adaptive_width(size_t rows, size_t cols, size_t cus);

/* sum of x[0..n) in double with Neumaier compensation: a reference against
 * which f32 sums in any order can be judged (its own error is far below an
 * f32 ulp of the result for the sizes the study uses). */
double study_sum_ref(const float *x, size_t n);

#endif
