/* binv-harness: what the tests, binv-bench and the tools share, on the
 * public API only: device set-up, host helpers (storage conversions, rng and
 * fillers, ulp comparison, hashing, clock) and one description per op
 * (harness/op_*.c: buffer sizes, the binv call, the CLBlast call where one
 * exists, the double-precision reference).  Not part of the library.
 *
 * The archive does not link a binv library itself: each program links
 * binv-cl (shared) or binv-cl-static after it (tests use internals). */
#ifndef BINV_HARNESS_H
#define BINV_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "binv/binv.h"

/* ---- device (harness/device.c) -------------------------------------------- */

typedef struct hx_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char name[256];
    char platform_name[256];
    cl_device_type type;
} hx_device;

/* spec: "gpu", "cpu", "P:D" (platform and device index) or NULL/"" for the
 * default: the environment's BINV_DEVICE, else the first GPU of any platform,
 * else the first device.  Creates a context and an in-order queue (with
 * profiling enabled).  Returns 0, or -1 with a message on stderr. */
int hx_device_open(const char *spec, hx_device *out);
void hx_device_close(hx_device *d);
/* Prints every platform and device with its "P:D" spec. */
void hx_device_list(FILE *f);
/* Whether the device lists extension `ext` (a whole word of CL_DEVICE_EXTENSIONS). */
int hx_device_has_ext(cl_device_id d, const char *ext);

/* Runs argv[0] (argv NULL-terminated, the environment inherited) in a
 * process of its own and waits at most limit_s seconds, then kills it.  For
 * third-party code that may hang inside an OpenCL call, which cannot be
 * interrupted in-process.  Returns 0 when the program exited with status 0;
 * otherwise -1 with what happened (did not start, ran out of time, killed
 * by a signal, exit status) in why. */
int hx_run_deadline(char *const argv[], long limit_s, char *why, size_t why_size);

/* ---- host helpers (harness/host.c) ----------------------------------------- */

/* splitmix64: deterministic data, identical on every platform. */
uint64_t hx_rng_next(uint64_t *state);
/* Monotonic wall clock in seconds. */
double hx_now_s(void);

size_t hx_dtype_size(binv_dtype dt);
const char *hx_dtype_name(binv_dtype dt);
/* Element i of storage `src` as f32 (exact). */
float hx_load(binv_dtype dt, const void *src, size_t i);
/* Stores v into element i of `dst`, rounded to nearest even (NaN stays NaN). */
void hx_store(binv_dtype dt, void *dst, size_t i, float v);

/* Fillers: `count` storage words of dt, deterministic from the seed.
 * wide: 2^-8 .. 2^8, random sign, full mantissa (f16 within its normal
 * range), so that any change of rounding order shows in the bits.
 * pow2: 0 and signed 1, 2, 4: every sum of products is exact.
 * unit: uniform in (-1, 1) with a full mantissa, never 0 and never a power
 * of two (the lowest mantissa bit is forced on when it would be all zero);
 * continues the rng state *seed (so consecutive calls continue one stream). */
void hx_fill_wide(binv_dtype dt, void *out, size_t count, uint64_t seed);
void hx_fill_pow2(binv_dtype dt, void *out, size_t count, uint64_t seed);
void hx_fill_unit(binv_dtype dt, void *out, size_t count, uint64_t *seed);

/* Distance in units in the last place of the storage dtype between two
 * values of that dtype: the number of representable values from a to b
 * (+0 and -0 are 0 apart).  NaN against non-NaN counts as infinity. */
double hx_ulp_distance(binv_dtype dt, const void *a, const void *b, size_t i);

typedef struct hx_diff {
    double max_abs;   /* max |a_i - b_i| in f64 (inf if one side is NaN/inf and differs) */
    double max_ulp;   /* max ulp distance */
    size_t differing; /* elements whose bits differ */
} hx_diff;
hx_diff hx_compare(binv_dtype dt, const void *ref, const void *x, size_t n);

/* A set of 64-bit FNV-1a hashes of byte strings, for counting distinct
 * outputs. */
typedef struct hx_hashset {
    uint64_t *h;
    int count, cap;
} hx_hashset;
uint64_t hx_hash(const void *data, size_t n);
/* Adds the hash of data; returns 1 if it was new. */
int hx_hashset_add(hx_hashset *s, const void *data, size_t n);
void hx_hashset_free(hx_hashset *s);

/* The batch sizes of a sweep: 1, 2, 3, 4, then doubling, up to max (and at
 * most cap of them).  Returns how many were written. */
size_t hx_batch_sizes(size_t max, size_t *out, size_t cap);

#include "ops.h"

#endif
