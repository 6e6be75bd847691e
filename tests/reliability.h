/* Helpers shared by test_reliability_args.c and test_reliability_faults.c. */
#ifndef BINV_TESTS_RELIABILITY_H
#define BINV_TESTS_RELIABILITY_H

#include <stdlib.h>
#include <string.h>

#include "common.h"

static inline void fill_bytes(const test_env *env, cl_mem b, size_t bytes, unsigned char v) {
    unsigned char *h = malloc(bytes);
    memset(h, v, bytes);
    test_write(env, b, bytes, h);
    free(h);
}

/* Every byte of b is v. */
static inline int all_bytes(const test_env *env, cl_mem b, size_t bytes, unsigned char v) {
    unsigned char *h = malloc(bytes);
    test_read(env, b, bytes, h);
    int ok = 1;
    for (size_t i = 0; i < bytes; i++) ok &= h[i] == v;
    free(h);
    return ok;
}

#endif
