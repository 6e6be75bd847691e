/* The study's measurements (tools/study.c): conversions, ulp distance,
 * diff and distinct-output counting; and a smoke run of the binv-study CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "study.h"

static void test_conversions(void **state) {
    (void)state;
    uint16_t h[8];
    /* f16: 1, -2, 65504 (max), 2^-24 (min subnormal), 1 + 2^-11 ties to even (1). */
    study_store(BINV_DTYPE_F16, h, 0, 1.0f);
    study_store(BINV_DTYPE_F16, h, 1, -2.0f);
    study_store(BINV_DTYPE_F16, h, 2, 65504.0f);
    study_store(BINV_DTYPE_F16, h, 3, ldexpf(1.0f, -24));
    study_store(BINV_DTYPE_F16, h, 4, 1.0f + ldexpf(1.0f, -11));
    study_store(BINV_DTYPE_F16, h, 5, 1.0f + 3 * ldexpf(1.0f, -11));
    study_store(BINV_DTYPE_F16, h, 6, 70000.0f);
    study_store(BINV_DTYPE_F16, h, 7, NAN);
    assert_int_equal(h[0], 0x3c00); assert_int_equal(h[1], 0xc000);
    assert_int_equal(h[2], 0x7bff); assert_int_equal(h[3], 0x0001);
    assert_int_equal(h[4], 0x3c00); assert_int_equal(h[5], 0x3c02);
    assert_int_equal(h[6], 0x7c00); assert_true((h[7] & 0x7c00) == 0x7c00 && (h[7] & 0x3ff));
    for (int i = 0; i < 6; i++) {
        float back = study_load(BINV_DTYPE_F16, h, (size_t)i);
        uint16_t again;
        study_store(BINV_DTYPE_F16, &again, 0, back);
        assert_int_equal(again, h[i]); /* round trip */
    }
    /* bf16: ties to even, NaN stays NaN. */
    uint16_t b[3];
    study_store(BINV_DTYPE_BF16, b, 0, 1.0f + ldexpf(1.0f, -8));     /* tie -> 1 */
    study_store(BINV_DTYPE_BF16, b, 1, 1.0f + 3 * ldexpf(1.0f, -8)); /* tie -> up */
    study_store(BINV_DTYPE_BF16, b, 2, NAN);
    assert_int_equal(b[0], 0x3f80); assert_int_equal(b[1], 0x3f82);
    assert_true(isnan(study_load(BINV_DTYPE_BF16, b, 2)));
}

static void test_ulp_and_diff(void **state) {
    (void)state;
    float a[4] = {1.0f, 0.0f, -1.0f, 5.0f}, b[4] = {1.0f, -0.0f, -1.0f, 5.0f};
    b[2] = nextafterf(-1.0f, -2.0f);
    b[3] = nextafterf(nextafterf(5.0f, 9.0f), 9.0f);
    assert_true(study_ulp_distance(BINV_DTYPE_F32, a, b, 0) == 0);
    assert_true(study_ulp_distance(BINV_DTYPE_F32, a, b, 1) == 0); /* +0 vs -0 */
    assert_true(study_ulp_distance(BINV_DTYPE_F32, a, b, 2) == 1);
    assert_true(study_ulp_distance(BINV_DTYPE_F32, a, b, 3) == 2);
    study_diff d = study_compare(BINV_DTYPE_F32, a, b, 4);
    assert_int_equal(d.differing, 3); /* bits of -0 differ from +0 */
    assert_true(d.max_ulp == 2);
    assert_true(d.max_abs == (double)b[3] - 5.0);
    float tiny_pos = ldexpf(1.0f, -149), tiny_neg = -ldexpf(1.0f, -149);
    assert_true(study_ulp_distance(BINV_DTYPE_F32, &tiny_pos, &tiny_neg, 0) == 2);
    float n1 = NAN, one = 1.0f;
    assert_true(isinf(study_ulp_distance(BINV_DTYPE_F32, &n1, &one, 0)));
    uint16_t h1 = 0x3c00, h2 = 0x3c05;
    assert_true(study_ulp_distance(BINV_DTYPE_F16, &h1, &h2, 0) == 5);
}

static void test_distinct(void **state) {
    (void)state;
    study_hashset s = {0};
    float x[3] = {1, 2, 3}, y[3] = {1, 2, 3}, z[3] = {1, 2, 3.0000002f};
    assert_int_equal(study_hashset_add(&s, x, sizeof x), 1);
    assert_int_equal(study_hashset_add(&s, y, sizeof y), 0);
    assert_int_equal(study_hashset_add(&s, z, sizeof z), 1);
    assert_int_equal(s.count, 2);
    study_hashset_free(&s);
    assert_int_equal(s.count, 0);
}

/* The CLI end to end, on the default device: it must exit 0, and its report
 * must say the invariant rows have 1 distinct output. */
static void test_cli_smoke(void **state) {
    (void)state;
    const char *exe = getenv("BINV_STUDY_EXE");
    if (!exe) skip();
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' --quick --n 64 --k 1100 --max-batch 8 --out binv-study-smoke > study.log 2>&1",
             exe);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen("binv-study-smoke/report.md", "r");
    assert_non_null(f);
    char line[1024];
    int inv = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "| binv-invariant |", 18) && (strstr(line, "yes") || strstr(line, "no"))) {
            inv++;
            assert_non_null(strstr(line, "| 1 | 0 | 0 | yes |"));
        }
    fclose(f);
    assert_int_equal(inv, 3); /* f32, f16, bf16 */
    f = fopen("binv-study-smoke/gemm.csv", "r");
    assert_non_null(f);
    fclose(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_ulp_and_diff),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_cli_smoke),
    };
    return cmocka_run_group_tests_name("study", tests, NULL, NULL);
}
