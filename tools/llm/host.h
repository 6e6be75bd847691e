/* The host helpers binv-llm uses (seeded random numbers, the clock, storage
 * conversion of the dtypes, hashes of outputs), named once here so that the
 * engine, the serving loop and the program depend on this header alone, not
 * on where the helpers live. */
#ifndef BINV_TOOLS_LLM_HOST_H
#define BINV_TOOLS_LLM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "binv/binv.h"
#include "study.h"

/* splitmix64: the same sequence on every platform. */
static inline uint64_t llm_rng_next(uint64_t *state) { return study_rng_next(state); }
/* Monotonic wall clock in seconds. */
static inline double llm_now_s(void) { return study_now_s(); }

static inline size_t llm_dtype_size(binv_dtype dt) { return study_dtype_size(dt); }
static inline const char *llm_dtype_name(binv_dtype dt) { return study_dtype_name(dt); }
/* Element i of storage `src` as f32 (exact). */
static inline float llm_load(binv_dtype dt, const void *src, size_t i) {
    return study_load(dt, src, i);
}
/* Stores v into element i of `dst`, rounded to nearest even. */
static inline void llm_store(binv_dtype dt, void *dst, size_t i, float v) {
    study_store(dt, dst, i, v);
}

/* 64-bit FNV-1a of bytes, and a set of such hashes for counting distinct
 * outputs (llm_hashset_add returns 1 when the hash was new). */
typedef study_hashset llm_hashset;
static inline uint64_t llm_hash(const void *data, size_t n) { return study_hash(data, n); }
static inline int llm_hashset_add(llm_hashset *s, const void *data, size_t n) {
    return study_hashset_add(s, data, n);
}
static inline void llm_hashset_free(llm_hashset *s) { study_hashset_free(s); }

#endif
