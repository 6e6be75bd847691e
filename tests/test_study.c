/* The study's measurements (harness/host.c, harness/op_rows.c): conversions, ulp distance,
 * diff and distinct-output counting; and a smoke run of the binv-study CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void test_conversions(void **state) {
    (void)state;
    uint16_t h[8];
    /* f16: 1, -2, 65504 (max), 2^-24 (min subnormal), 1 + 2^-11 ties to even (1). */
    hx_store(BINV_DTYPE_F16, h, 0, 1.0f);
    hx_store(BINV_DTYPE_F16, h, 1, -2.0f);
    hx_store(BINV_DTYPE_F16, h, 2, 65504.0f);
    hx_store(BINV_DTYPE_F16, h, 3, ldexpf(1.0f, -24));
    hx_store(BINV_DTYPE_F16, h, 4, 1.0f + ldexpf(1.0f, -11));
    hx_store(BINV_DTYPE_F16, h, 5, 1.0f + 3 * ldexpf(1.0f, -11));
    hx_store(BINV_DTYPE_F16, h, 6, 70000.0f);
    hx_store(BINV_DTYPE_F16, h, 7, NAN);
    assert_int_equal(h[0], 0x3c00); assert_int_equal(h[1], 0xc000);
    assert_int_equal(h[2], 0x7bff); assert_int_equal(h[3], 0x0001);
    assert_int_equal(h[4], 0x3c00); assert_int_equal(h[5], 0x3c02);
    assert_int_equal(h[6], 0x7c00); assert_true((h[7] & 0x7c00) == 0x7c00 && (h[7] & 0x3ff));
    for (int i = 0; i < 6; i++) {
        float back = hx_load(BINV_DTYPE_F16, h, (size_t)i);
        uint16_t again;
        hx_store(BINV_DTYPE_F16, &again, 0, back);
        assert_int_equal(again, h[i]); /* round trip */
    }
    /* bf16: ties to even, NaN stays NaN. */
    uint16_t b[3];
    hx_store(BINV_DTYPE_BF16, b, 0, 1.0f + ldexpf(1.0f, -8));     /* tie -> 1 */
    hx_store(BINV_DTYPE_BF16, b, 1, 1.0f + 3 * ldexpf(1.0f, -8)); /* tie -> up */
    hx_store(BINV_DTYPE_BF16, b, 2, NAN);
    assert_int_equal(b[0], 0x3f80); assert_int_equal(b[1], 0x3f82);
    assert_true(isnan(hx_load(BINV_DTYPE_BF16, b, 2)));
}

static void test_ulp_and_diff(void **state) {
    (void)state;
    float a[4] = {1.0f, 0.0f, -1.0f, 5.0f}, b[4] = {1.0f, -0.0f, -1.0f, 5.0f};
    b[2] = nextafterf(-1.0f, -2.0f);
    b[3] = nextafterf(nextafterf(5.0f, 9.0f), 9.0f);
    assert_true(hx_ulp_distance(BINV_DTYPE_F32, a, b, 0) == 0);
    assert_true(hx_ulp_distance(BINV_DTYPE_F32, a, b, 1) == 0); /* +0 vs -0 */
    assert_true(hx_ulp_distance(BINV_DTYPE_F32, a, b, 2) == 1);
    assert_true(hx_ulp_distance(BINV_DTYPE_F32, a, b, 3) == 2);
    hx_diff d = hx_compare(BINV_DTYPE_F32, a, b, 4);
    assert_int_equal(d.differing, 3); /* bits of -0 differ from +0 */
    assert_true(d.max_ulp == 2);
    assert_true(d.max_abs == (double)b[3] - 5.0);
    float tiny_pos = ldexpf(1.0f, -149), tiny_neg = -ldexpf(1.0f, -149);
    assert_true(hx_ulp_distance(BINV_DTYPE_F32, &tiny_pos, &tiny_neg, 0) == 2);
    float n1 = NAN, one = 1.0f;
    assert_true(isinf(hx_ulp_distance(BINV_DTYPE_F32, &n1, &one, 0)));
    uint16_t h1 = 0x3c00, h2 = 0x3c05;
    assert_true(hx_ulp_distance(BINV_DTYPE_F16, &h1, &h2, 0) == 5);
}

static void test_distinct(void **state) {
    (void)state;
    hx_hashset s = {0};
    float x[3] = {1, 2, 3}, y[3] = {1, 2, 3}, z[3] = {1, 2, 3.0000002f};
    assert_int_equal(hx_hashset_add(&s, x, sizeof x), 1);
    assert_int_equal(hx_hashset_add(&s, y, sizeof y), 0);
    assert_int_equal(hx_hashset_add(&s, z, sizeof z), 1);
    assert_int_equal(s.count, 2);
    hx_hashset_free(&s);
    assert_int_equal(s.count, 0);
}

static void test_batch_sizes(void **state) {
    (void)state;
    size_t b[32];
    size_t n = hx_batch_sizes(64, b, 32);
    const size_t want[] = {1, 2, 3, 4, 8, 16, 32, 64};
    assert_int_equal(n, 8);
    for (size_t i = 0; i < n; i++) assert_int_equal(b[i], want[i]);
    assert_int_equal(hx_batch_sizes(6, b, 32), 4); /* 1 2 3 4 */
    assert_int_equal(hx_batch_sizes(1, b, 32), 1);
    assert_int_equal(hx_batch_sizes(0, b, 32), 0);
    assert_int_equal(hx_batch_sizes(1u << 20, b, 5), 5); /* capped */
}

/* The adaptive row rule of docs/schedules.md, at the widths the study uses:
 * 2 compute units (the PoCL CI machine) and 132 (an H100). */
static void test_rows_adaptive_width(void **state) {
    (void)state;
    /* 4096 wide, 16 work-groups fill the device: 16, 8, 6 pieces, then 4. */
    assert_int_equal(hx_rows_adaptive_width(1, 4096, 2), 256);
    assert_int_equal(hx_rows_adaptive_width(2, 4096, 2), 512);
    assert_int_equal(hx_rows_adaptive_width(3, 4096, 2), 704); /* ceil(4096/6) = 683 -> 704 */
    assert_int_equal(hx_rows_adaptive_width(4, 4096, 2), 1024);
    assert_int_equal(hx_rows_adaptive_width(64, 4096, 2), 1024);
    assert_int_equal(hx_rows_adaptive_width(1, 14336, 2), 896);
    assert_int_equal(hx_rows_adaptive_width(2, 14336, 2), 1024);
    /* A vocabulary row already has 149 chunks >= 16: never split further. */
    for (size_t r = 1; r <= 64; r++)
        assert_int_equal(hx_rows_adaptive_width(r, 152064, 2), 1024);
    /* On 132 units (1056 work-groups) it is: 1056 pieces capped at 32 x 4. */
    assert_int_equal(hx_rows_adaptive_width(1, 4096, 132), 32);
    assert_int_equal(hx_rows_adaptive_width(1, 152064, 132), 160); /* 1056 pieces */
    assert_int_equal(hx_rows_adaptive_width(8, 152064, 132), 1024);  /* 149 >= 132 */
    assert_int_equal(hx_rows_adaptive_width(2048, 4096, 132), 1024);
    /* Never wider than the invariant chunk. */
    for (size_t c = 1; c < 5000; c += 37)
        for (size_t r = 1; r < 40; r += 3)
            assert_true(hx_rows_adaptive_width(r, c, 2) <=
                        binv_rows_chunk_size(BINV_DTYPE_F32, c));
}

static void test_sum_ref(void **state) {
    (void)state;
    /* 2^24 + 1 + 1 + ... : f32 running sums lose every 1, the reference not. */
    enum { N = 1001 };
    float x[N];
    x[0] = 16777216.0f;
    for (int i = 1; i < N; i++) x[i] = 1.0f;
    assert_true(hx_sum_ref(x, N) == 16777216.0 + 1000.0);
    /* Cancellation: big + small - big. */
    float y[3] = {1e30f, 3.0f, -1e30f};
    assert_true(hx_sum_ref(y, 3) == 3.0);
    assert_true(hx_sum_ref(y, 0) == 0.0);
}

/* Diff in the output dtype: a one-element f32 output (row_sum) and bf16. */
static void test_compare_dtypes(void **state) {
    (void)state;
    float a = 297.114868f, b = nextafterf(a, 0.0f);
    hx_diff d = hx_compare(BINV_DTYPE_F32, &a, &b, 1);
    assert_int_equal(d.differing, 1);
    assert_true(d.max_ulp == 1);
    assert_true(d.max_abs == (double)a - (double)b);
    uint16_t p[2], q[2];
    hx_store(BINV_DTYPE_BF16, p, 0, 1.0f);
    hx_store(BINV_DTYPE_BF16, p, 1, -3.0f);
    hx_store(BINV_DTYPE_BF16, q, 0, 1.0f);
    hx_store(BINV_DTYPE_BF16, q, 1, -3.0f - 3 * 0.015625f); /* 3 bf16 ulp at 2..4 */
    d = hx_compare(BINV_DTYPE_BF16, p, q, 2);
    assert_int_equal(d.differing, 1);
    assert_true(d.max_ulp == 3);
    assert_true(d.max_abs == 3 * 0.015625);
    /* Identical rows: nothing differs, distinct counts once. */
    hx_hashset s = {0};
    assert_int_equal(hx_hashset_add(&s, p, sizeof p), 1);
    assert_int_equal(hx_hashset_add(&s, p, sizeof p), 0);
    assert_int_equal(hx_hashset_add(&s, q, sizeof q), 1);
    assert_int_equal(s.count, 2);
    hx_hashset_free(&s);
}

/* Splits a markdown table row into trimmed cells; returns the count. */
static int cells(char *line, char **out, int max) {
    int n = 0;
    char *p = strchr(line, '|');
    while (p && n < max) {
        char *e = strchr(p + 1, '|');
        if (!e) break;
        char *b = p + 1;
        while (*b == ' ') b++;
        char *t = e;
        while (t > b && t[-1] == ' ') t--;
        *t = '\0';
        out[n++] = b;
        p = e;
    }
    return n;
}

/* The CLI end to end, on the default device, at tiny sizes: it must exit 0,
 * write every family's CSV, and its report must say that every invariant
 * series had 1 distinct output, 0 diff and deterministic repeats, and that
 * binv_row_sum gave 1 distinct result in the atomics demonstration. */
static void test_cli_smoke(void **state) {
    (void)state;
    const char *exe = getenv("BINV_STUDY_EXE");
    if (!exe) skip();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --bogus > /dev/null 2>&1", exe);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' --quick --n 64 --k 1100 --max-batch 8 --cols 2100 --max-rows 8 "
             "--atomic-n 65536 --atomic-repeats 6 --repeats 2 --attn-ctx 600 --out binv-study-smoke "
             "> study.log 2>&1",
             exe);
    const double t0 = hx_now_s();
    assert_int_equal(system(cmd), 0);
    printf("binv-study smoke run: %.1f s\n", hx_now_s() - t0);
    FILE *f = fopen("binv-study-smoke/report.md", "r");
    assert_non_null(f);
    char line[4096];
    int inv_gemm = 0, inv_rows = 0, inv_attn = 0, rowsum = 0, attention = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "## Attention", 12)) attention = 1;
        char *c[16];
        int n = cells(line, c, 16);
        /* Summary tables: op | shape | implementation | dtype | distinct |
         * max abs | max ulp | deterministic | ms | ms. */
        if (n == 10 && !strcmp(c[2], "binv-invariant") &&
            (!strcmp(c[7], "yes") || strstr(c[7], "no"))) {
            assert_string_equal(c[4], "1");
            assert_string_equal(c[5], "0");
            assert_string_equal(c[6], "0");
            assert_string_equal(c[7], "yes");
            if (!strcmp(c[0], "gemm")) inv_gemm++;
            else if (!strcmp(c[0], "decode-batch") || !strcmp(c[0], "prefill-chunk")) inv_attn++;
            else inv_rows++;
        }
        if (n == 8 && !strcmp(c[0], "binv_row_sum (invariant)")) {
            assert_string_equal(c[2], "1");
            rowsum++;
        }
    }
    fclose(f);
    assert_int_equal(inv_gemm, 3);     /* f32, f16, bf16 (n = 64: one shape) */
    assert_int_equal(inv_rows, 7 * 3); /* 7 row cases x 3 dtypes */
    assert_int_equal(rowsum, 1);
    assert_int_equal(inv_attn, 2 * 3); /* decode-batch and prefill-chunk x 3 dtypes */
    assert_true(attention);
    const char *files[] = {"gemm.csv", "rows.csv", "atomics.csv", "attention.csv"};
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof line, "binv-study-smoke/%s", files[i]);
        f = fopen(line, "r");
        assert_non_null(f);
        int lines = 0;
        while (fgets(line, sizeof line, f)) lines++;
        fclose(f);
        assert_true(lines > 3);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_ulp_and_diff),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_rows_adaptive_width),
        cmocka_unit_test(test_sum_ref),
        cmocka_unit_test(test_compare_dtypes),
        cmocka_unit_test(test_cli_smoke),
    };
    return cmocka_run_group_tests_name("study", tests, NULL, NULL);
}
