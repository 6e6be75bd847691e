/* binv-bench's command line: usage text, parsing, defaults. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: binv-bench [options]\n"
        "  --device gpu|cpu|P:D   device: first GPU / first CPU of any platform, or platform P,\n"
        "                         device D as numbered by --list (default: $BINV_DEVICE, else\n"
        "                         the first GPU, else the first device)\n"
        "  --list                 list platforms and devices, then exit\n"
        "  --op gemm|rows|attention|decode|all   what to measure (default gemm; all = gemm,\n"
        "                         rows and attention)\n"
        "  --quick                small CPU smoke run: gemm m in {1,4,64}, (n,k) in {512x512,\n"
        "                         72x1000}; rows in {1,64}, cols in {4096,14336}\n"
        "  --dtype f32|f16|bf16|all   storage dtype(s) (default f32)\n"
        "  --reps N               timed repetitions per configuration, median reported\n"
        "                         (default 20 on a GPU, 3 otherwise)\n"
        "  --schedule invariant|adaptive|both   binv schedules to run (default both)\n"
        " gemm:\n"
        "  --csv FILE             CSV output (default binv-bench-gemm.csv)\n"
        "  --m LIST               comma-separated m values\n"
        "                         (default 1,2,4,8,16,32,64,128,512,2048,4096)\n"
        "  --nk LIST              comma-separated NxK pairs (W is N x K)\n"
        "                         (default 4096x4096,4096x14336,14336x4096)\n"
        "  --weight-copies N      weight buffers to rotate through (default: enough for\n"
        "                         > 200 MB on a GPU so that W never sits in L2; 1 on a CPU\n"
        "                         or with --quick)\n"
        "  --plot DIR             write GFLOP/s-vs-m data files and PNGs (gnuplot) into DIR\n"
        " rows:\n"
        "  --rows-csv FILE        CSV output (default binv-bench-rows.csv)\n"
        "  --rows-ops LIST        comma-separated among rmsnorm, softmax, log_softmax,\n"
        "                         layernorm, add_rmsnorm, row_sum, row_mean,\n"
        "                         selected_log_softmax, or all\n"
        "                         (default rmsnorm,softmax,log_softmax)\n"
        "  --rows LIST            row counts (default 1,8,64,512,4096,16384)\n"
        "  --cols LIST            row lengths (default 4096,14336,152064); a shape whose\n"
        "                         buffers exceed 25%% of the device memory is skipped.  On a\n"
        "                         GPU the inputs and outputs rotate through >= 128 MB each so\n"
        "                         that small shapes are timed from DRAM, not from L2\n"
        " attention (32 heads, 8 KV heads, head_dim 128):\n"
        "  --attn-csv FILE        CSV output (default binv-bench-attention.csv)\n"
        "  --attn-batch LIST      decode batch sizes (default 1,8,64; --quick 1,4)\n"
        "  --attn-ctx LIST        decode context lengths (default 512,4096,32768;\n"
        "                         --quick 300,1000); shapes over the memory limit are skipped\n"
        "  --attn-prefill N       prefill length (default 4096; --quick 256; 0: none)\n"
        " decode (binv-llm's engine on a synthetic model; bench/torch_reference.py is the\n"
        " PyTorch counterpart):\n"
        "  --decode-csv FILE      CSV output (default binv-bench-decode.csv)\n"
        "  --decode-model SHAPE   1b (Llama-3.2-1B shape, the default), tiny (--quick), or\n"
        "                         dim,hidden,layers,heads,kv_heads,vocab\n"
        "  --decode-batch LIST    sequences per step (default 1,8,64; --quick 1,4)\n"
        "  --decode-ctx LIST      context lengths (default 1024,4096; --quick 100,300)\n"
        "  --decode-steps N       timed steps per configuration, median reported\n"
        "                         (default 20; --quick 3)\n"
        "  --help                 this text\n");
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || v == 0 || v > 0x7fffffffULL) return 0;
    *out = (size_t)v;
    return (int)(end - s);
}

static int parse_size_list(const char *s, size_list *l) {
    l->n = 0;
    while (*s) {
        size_t v;
        int len = parse_size(s, &v);
        if (!len || l->n >= MAX_LIST) return 0;
        l->v[l->n++] = v;
        s += len;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return l->n > 0;
}

static int parse_nk_list(const char *s, options *o) {
    o->nnk = 0;
    while (*s) {
        size_t n, k;
        int len = parse_size(s, &n);
        if (!len || o->nnk >= MAX_LIST) return 0;
        s += len;
        if (*s != 'x' && *s != 'X') return 0;
        s++;
        len = parse_size(s, &k);
        if (!len) return 0;
        s += len;
        o->ns[o->nnk] = n;
        o->ks[o->nnk] = k;
        o->nnk++;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return o->nnk > 0;
}

static int parse_rops(const char *s, options *o) {
    o->nrops = 0;
    if (!strcmp(s, "all")) {
        for (int i = 0; i < HX_ROWS_COUNT; i++) o->rops[o->nrops++] = i;
        return 1;
    }
    while (*s) {
        size_t len = strcspn(s, ",");
        int hit = hx_rows_find(s, len);
        if (hit < 0) return 0;
        for (int i = 0; i < o->nrops; i++)
            if (o->rops[i] == hit) return 0;
        o->rops[o->nrops++] = hit;
        s += len;
        if (*s == ',') s++;
    }
    return o->nrops > 0;
}

static void set_list(size_list *l, const size_t *v, int n) {
    memcpy(l->v, v, (size_t)n * sizeof *v);
    l->n = n;
}

/* A --m / --rows / --cols value, or the quick or the default list. */
static int size_list_option(const char *name, const char *val, size_list *l, int quick,
                            const size_t *quick_v, int nquick, const size_t *def_v, int ndef) {
    if (!val) {
        if (quick) set_list(l, quick_v, nquick);
        else set_list(l, def_v, ndef);
        return 0;
    }
    if (parse_size_list(val, l)) return 0;
    fprintf(stderr, "binv-bench: %s needs a comma-separated list of at most %d integers in "
                    "1..2^31-1, not '%s'\n", name, MAX_LIST, val);
    return 1;
}

/* The list options as given (NULL: not given). */
typedef struct lists {
    const char *m, *nk, *rows, *cols, *ab, *ac, *prefill, *db, *dc, *dsteps;
} lists;

static void set_defaults(options *o) {
    memset(o, 0, sizeof *o);
    o->csv = "binv-bench-gemm.csv";
    o->rows_csv = "binv-bench-rows.csv";
    o->attn_csv = "binv-bench-attention.csv";
    o->decode_csv = "binv-bench-decode.csv";
    o->run = RUN_GEMM;
    o->dtypes[0] = BINV_DTYPE_F32;
    o->ndtypes = 1;
    o->run_invariant = o->run_adaptive = 1;
    o->rops[0] = HX_RMSNORM;
    o->rops[1] = HX_SOFTMAX;
    o->rops[2] = HX_LOG_SOFTMAX;
    o->nrops = 3;
}

/* Splits argv[*i] ("--name", "--name=value" or "--name value") into name
 * and val, after checking the name is known and the value present or absent
 * as it should be.  Returns 0, or 1 on a usage error. */
static int next_option(int argc, char **argv, int *i, char name[32], const char **val) {
    const char *arg = argv[*i];
    *val = NULL;
    if (strncmp(arg, "--", 2) != 0) {
        fprintf(stderr, "binv-bench: unexpected argument '%s'\n", arg);
        return 1;
    }
    const char *eq = strchr(arg, '=');
    size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
    if (nlen >= 32) {
        fprintf(stderr, "binv-bench: unknown option '%s'\n", arg);
        return 1;
    }
    memcpy(name, arg, nlen);
    name[nlen] = '\0';
    static const char *const known[] = {"--help", "--list", "--quick", "--device", "--csv",
                                        "--dtype", "--reps", "--weight-copies", "--m",
                                        "--nk", "--schedule", "--plot", "--op", "--rows-csv",
                                        "--rows-ops", "--rows", "--cols", "--attn-csv",
                                        "--attn-batch", "--attn-ctx", "--attn-prefill",
                                        "--decode-csv", "--decode-model", "--decode-batch",
                                        "--decode-ctx", "--decode-steps"};
    int is_known = 0;
    for (size_t q = 0; q < sizeof known / sizeof *known; q++)
        is_known |= !strcmp(name, known[q]);
    if (!is_known) {
        fprintf(stderr, "binv-bench: unknown option '%s'\n", name);
        return 1;
    }
    int takes_value = strcmp(name, "--list") && strcmp(name, "--quick") &&
                      strcmp(name, "--help");
    if (takes_value) {
        if (eq) {
            *val = eq + 1;
        } else if (*i + 1 < argc) {
            *val = argv[++*i];
        } else {
            fprintf(stderr, "binv-bench: option %s needs a value\n", name);
            return 1;
        }
    } else if (eq) {
        fprintf(stderr, "binv-bench: option %s takes no value\n", name);
        return 1;
    }
    return 0;
}

/* --op, --dtype, --schedule, --rows-ops: one word among a few.  Returns 0,
 * 1 on a usage error, -1 if name is none of them. */
static int apply_choice(options *o, const char *name, const char *val) {
    if (!strcmp(name, "--op")) {
        if (!strcmp(val, "gemm")) o->run = RUN_GEMM;
        else if (!strcmp(val, "rows")) o->run = RUN_ROWS;
        else if (!strcmp(val, "attention")) o->run = RUN_ATTN;
        else if (!strcmp(val, "decode")) o->run = RUN_DECODE;
        else if (!strcmp(val, "all")) o->run = RUN_GEMM | RUN_ROWS | RUN_ATTN;
        else {
            fprintf(stderr, "binv-bench: --op must be gemm, rows, attention, decode or all, not "
                            "'%s'\n", val);
            return 1;
        }
    } else if (!strcmp(name, "--rows-ops")) {
        if (!parse_rops(val, o)) {
            fprintf(stderr, "binv-bench: --rows-ops needs a comma-separated list of distinct "
                            "names among rmsnorm, softmax, log_softmax, layernorm, "
                            "add_rmsnorm, row_sum, row_mean (or all), not '%s'\n", val);
            return 1;
        }
    } else if (!strcmp(name, "--dtype")) {
        if (!strcmp(val, "f32")) { o->dtypes[0] = BINV_DTYPE_F32; o->ndtypes = 1; }
        else if (!strcmp(val, "f16")) { o->dtypes[0] = BINV_DTYPE_F16; o->ndtypes = 1; }
        else if (!strcmp(val, "bf16")) { o->dtypes[0] = BINV_DTYPE_BF16; o->ndtypes = 1; }
        else if (!strcmp(val, "all")) {
            o->dtypes[0] = BINV_DTYPE_F32;
            o->dtypes[1] = BINV_DTYPE_F16;
            o->dtypes[2] = BINV_DTYPE_BF16;
            o->ndtypes = 3;
        } else {
            fprintf(stderr, "binv-bench: --dtype must be f32, f16, bf16 or all, not '%s'\n",
                    val);
            return 1;
        }
    } else if (!strcmp(name, "--schedule")) {
        if (!strcmp(val, "invariant")) { o->run_invariant = 1; o->run_adaptive = 0; }
        else if (!strcmp(val, "adaptive")) { o->run_invariant = 0; o->run_adaptive = 1; }
        else if (!strcmp(val, "both")) { o->run_invariant = 1; o->run_adaptive = 1; }
        else {
            fprintf(stderr, "binv-bench: --schedule must be invariant, adaptive or both\n");
            return 1;
        }
    } else {
        return -1;
    }
    return 0;
}

/* One option (name and val from next_option).  Returns 0, 1 on a usage
 * error, 2 after --help. */
static int apply_option(options *o, lists *l, const char *name, const char *val) {
    const int choice = apply_choice(o, name, val);
    if (choice >= 0) return choice;
    if (!strcmp(name, "--help")) {
        usage(stdout);
        return 2;
    } else if (!strcmp(name, "--list")) {
        o->list = 1;
    } else if (!strcmp(name, "--quick")) {
        o->quick = 1;
    } else if (!strcmp(name, "--device")) {
        o->device = val;
    } else if (!strcmp(name, "--csv") || !strcmp(name, "--rows-csv") ||
               !strcmp(name, "--attn-csv") || !strcmp(name, "--decode-csv")) {
        if (!*val) { fprintf(stderr, "binv-bench: %s needs a file name\n", name); return 1; }
        if (!strcmp(name, "--csv")) o->csv = val;
        else if (!strcmp(name, "--rows-csv")) o->rows_csv = val;
        else if (!strcmp(name, "--decode-csv")) o->decode_csv = val;
        else o->attn_csv = val;
    } else if (!strcmp(name, "--decode-model")) {
        if (!*val) { fprintf(stderr, "binv-bench: --decode-model needs a shape\n"); return 1; }
        o->decode_model = val;
    } else if (!strcmp(name, "--reps")) {
        size_t v;
        if (parse_size(val, &v) != (int)strlen(val) || v > 100000) {
            fprintf(stderr, "binv-bench: --reps needs an integer in 1..100000, not '%s'\n",
                    val);
            return 1;
        }
        o->reps = (int)v;
    } else if (!strcmp(name, "--weight-copies")) {
        size_t v;
        if (parse_size(val, &v) != (int)strlen(val) || v > 1024) {
            fprintf(stderr, "binv-bench: --weight-copies needs an integer in 1..1024\n");
            return 1;
        }
        o->wcopies = (int)v;
    } else if (!strcmp(name, "--plot")) {
        if (!*val || strpbrk(val, "'\"\\$`\n")) {
            fprintf(stderr, "binv-bench: --plot needs a directory name without quotes, "
                            "backslashes, '$' or '`'\n");
            return 1;
        }
        o->plot_dir = val;
    } else {
        const char **slot = !strcmp(name, "--m")            ? &l->m
                            : !strcmp(name, "--nk")         ? &l->nk
                            : !strcmp(name, "--rows")       ? &l->rows
                            : !strcmp(name, "--cols")       ? &l->cols
                            : !strcmp(name, "--attn-batch") ? &l->ab
                            : !strcmp(name, "--attn-ctx")   ? &l->ac
                            : !strcmp(name, "--attn-prefill") ? &l->prefill
                            : !strcmp(name, "--decode-batch") ? &l->db
                            : !strcmp(name, "--decode-ctx") ? &l->dc
                            : !strcmp(name, "--decode-steps") ? &l->dsteps
                                                              : NULL;
        if (!slot) {
            fprintf(stderr, "binv-bench: unknown option '%s' (see --help)\n", name);
            return 1;
        }
        *slot = val;
    }
    return 0;
}

/* The size lists: an explicit list wins over --quick, which wins over the
 * default.  Returns 0, or 1 on a usage error. */
static int finish_lists(options *o, const lists *l) {
    static const size_t def_m[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 4096};
    static const size_t def_n[] = {4096, 4096, 14336}, def_k[] = {4096, 14336, 4096};
    static const size_t quick_m[] = {1, 4, 64};
    /* 72x1000: K is two chunks of the invariant schedule (the second partial),
     * and the few output tiles make the library split K on a small CPU. */
    static const size_t quick_n[] = {512, 72}, quick_k[] = {512, 1000};
    static const size_t def_rows[] = {1, 8, 64, 512, 4096, 16384}, quick_rows[] = {1, 64};
    static const size_t def_cols[] = {4096, 14336, 152064}, quick_cols[] = {4096, 14336};
    static const size_t def_ab[] = {1, 8, 64}, quick_ab[] = {1, 4};
    static const size_t def_ac[] = {512, 4096, 32768}, quick_ac[] = {300, 1000};
    static const size_t def_dc[] = {1024, 4096}, quick_dc[] = {100, 300};
    if (size_list_option("--m", l->m, &o->ms, o->quick, quick_m, 3, def_m, 11) ||
        size_list_option("--rows", l->rows, &o->rows, o->quick, quick_rows, 2, def_rows, 6) ||
        size_list_option("--cols", l->cols, &o->cols, o->quick, quick_cols, 2, def_cols, 3) ||
        size_list_option("--attn-batch", l->ab, &o->attn_batch, o->quick, quick_ab, 2, def_ab,
                         3) ||
        size_list_option("--attn-ctx", l->ac, &o->attn_ctx, o->quick, quick_ac, 2, def_ac, 3) ||
        size_list_option("--decode-batch", l->db, &o->decode_batch, o->quick, quick_ab, 2,
                         def_ab, 3) ||
        size_list_option("--decode-ctx", l->dc, &o->decode_ctx, o->quick, quick_dc, 2, def_dc,
                         2))
        return 1;
    if (!o->decode_model) o->decode_model = o->quick ? "tiny" : "1b";
    size_t steps = o->quick ? 3 : 20;
    if (l->dsteps && (parse_size(l->dsteps, &steps) != (int)strlen(l->dsteps) || !steps ||
                      steps > 10000)) {
        fprintf(stderr, "binv-bench: --decode-steps needs an integer in 1..10000\n");
        return 1;
    }
    o->decode_steps = (int)steps;
    o->attn_prefill = o->quick ? 256 : 4096;
    const char *prefill = l->prefill;
    if (prefill && !strcmp(prefill, "0")) o->attn_prefill = 0;
    else if (prefill && (parse_size(prefill, &o->attn_prefill) != (int)strlen(prefill) ||
                         o->attn_prefill > (1u << 20))) {
        fprintf(stderr, "binv-bench: --attn-prefill needs an integer in 0..1048576\n");
        return 1;
    }
    if (l->nk) {
        if (!parse_nk_list(l->nk, o)) {
            fprintf(stderr, "binv-bench: --nk needs a comma-separated list like "
                            "4096x4096,4096x14336, not '%s'\n", l->nk);
            return 1;
        }
    } else {
        o->nnk = o->quick ? 2 : 3;
        memcpy(o->ns, o->quick ? quick_n : def_n, (size_t)o->nnk * sizeof(size_t));
        memcpy(o->ks, o->quick ? quick_k : def_k, (size_t)o->nnk * sizeof(size_t));
    }
    return 0;
}

int parse_args(int argc, char **argv, options *o) {
    lists l;
    memset(&l, 0, sizeof l);
    set_defaults(o);
    for (int i = 1; i < argc; i++) {
        char name[32];
        const char *val;
        if (next_option(argc, argv, &i, name, &val)) return 1;
        const int rc = apply_option(o, &l, name, val);
        if (rc) return rc;
    }
    return finish_lists(o, &l);
}
