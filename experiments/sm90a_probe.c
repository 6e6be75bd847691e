/* sm90a_probe: does NVIDIA's OpenCL driver take PTX for sm_90a (wgmma) when the
 * program is created from a binary?  Its OpenCL C compiler targets sm_90 and
 * refuses inline wgmma; its program binaries are PTX text.  Steps: build a
 * kernel from source with a marked instruction, read the PTX back, then
 *   A: retarget it to sm_90a and reload it (clCreateProgramWithBinary);
 *   B: also replace the marked instruction by wgmma.fence.sync.aligned.
 * Each variant is built, run and its output checked.  Then: how much local
 * memory a __local kernel argument may have (CL_DEVICE_LOCAL_MEM_SIZE says
 * 48 KB; the SM has 228 KB), and whether a kernel whose PTX asks for
 * thread-block clusters (.reqnctapercluster 2, 1, 1, added to the driver's
 * PTX) launches as clusters through clEnqueueNDRangeKernel.  Not part of the
 * library.
 *   build and run: gcc -O1 experiments/sm90a_probe.c -lOpenCL -ldl -o sm90a_probe && ./sm90a_probe
 *   (result on the lent H100: docs/results/h100/gemm/sm90a-probe.txt) */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

static const char *SRC =
    "__kernel void probe(__global float *o) {\n"
    "  float x = (float)get_global_id(0);\n"
    "  asm volatile(\"membar.cta; // BINV_MARK\" ::: \"memory\");\n"
    "  o[get_global_id(0)] = x * 2.0f;\n"
    "}\n";

static const char *DYN =
    "__kernel void dyn(__global uint *o, __local uint *s, uint words) {\n"
    "  const uint l = get_local_id(0);\n"
    "  for (uint i = l; i < words; i += 128) s[i] = i * 3u;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  uint acc = 0;\n"
    "  for (uint i = l; i < words; i += 128) acc += s[words - 1 - i] == (words - 1 - i) * 3u;\n"
    "  o[get_global_id(0)] = acc;\n"
    "}\n";

static void try_dyn(cl_context c, cl_device_id d, cl_command_queue q) {
    cl_int e;
    cl_ulong lm = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL);
    printf("CL_DEVICE_LOCAL_MEM_SIZE %llu\n", (unsigned long long)lm);
    cl_program p = clCreateProgramWithSource(c, 1, &DYN, NULL, &e);
    if (clBuildProgram(p, 1, &d, "", NULL, NULL) != CL_SUCCESS) { printf("dyn: build failed\n"); return; }
    cl_kernel k = clCreateKernel(p, "dyn", &e);
    cl_mem o = clCreateBuffer(c, CL_MEM_READ_WRITE, 264 * 128 * 4, NULL, &e);
    static const size_t kb[] = {32, 48, 64, 96, 160, 200, 227};
    for (size_t i = 0; i < sizeof kb / sizeof *kb; i++) {
        cl_uint words = (cl_uint)(kb[i] * 1024 / 4);
        clSetKernelArg(k, 0, sizeof o, &o);
        cl_int ea = clSetKernelArg(k, 1, kb[i] * 1024, NULL);
        clSetKernelArg(k, 2, sizeof words, &words);
        size_t g = 264 * 128, l = 128;
        cl_int el = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
        cl_uint *h = malloc(g * 4);
        cl_int er = clEnqueueReadBuffer(q, o, CL_TRUE, 0, g * 4, h, 0, NULL, NULL);
        unsigned long long sum = 0;
        for (size_t j = 0; j < g; j++) sum += h[j];
        printf("dyn %zu KB: setarg %d, launch %d, read %d, %s\n", kb[i], ea, el, er,
               er == CL_SUCCESS && sum == 264ull * words ? "correct" : "WRONG");
        free(h);
    }
    clReleaseMemObject(o); clReleaseKernel(k); clReleaseProgram(p);
}

static const char *CLU =
    "__kernel void clu(__global uint *o) {\n"
    "  uint r, c;\n"
    "  asm volatile(\"mov.u32 %0, %%cluster_ctarank;\" : \"=r\"(r));\n"
    "  asm volatile(\"mov.u32 %0, %%clusterid.x;\" : \"=r\"(c));\n"
    "  if (get_local_id(0) == 0) { o[2 * get_group_id(0)] = r; o[2 * get_group_id(0) + 1] = c; }\n"
    "}\n"
    /* distributed local memory: read the peer's tile, then write into it */
    "__kernel void dsm(__global uint *o) {\n"
    "  __local uint s[64], s2[64];\n"
    "  const uint l = get_local_id(0);\n"
    "  uint r, rem, v, rem2, w;\n"
    "  asm volatile(\"mov.u32 %0, %%cluster_ctarank;\" : \"=r\"(r));\n"
    "  s[l] = r * 1000 + l;\n"
    "  asm volatile(\"barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;\" ::: \"memory\");\n"
    "  asm volatile(\"mapa.shared::cluster.u32 %0, %1, %2;\" : \"=r\"(rem) : \"r\"((uint)(ulong)(s + l)), \"r\"(r ^ 1u));\n"
    "  asm volatile(\"ld.shared::cluster.u32 %0, [%1];\" : \"=r\"(v) : \"r\"(rem) : \"memory\");\n"
    "  asm volatile(\"mapa.shared::cluster.u32 %0, %1, %2;\" : \"=r\"(rem2) : \"r\"((uint)(ulong)(s2 + l)), \"r\"(r ^ 1u));\n"
    "  asm volatile(\"st.shared::cluster.u32 [%0], %1;\" :: \"r\"(rem2), \"r\"(v + 7u) : \"memory\");\n"
    "  asm volatile(\"barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;\" ::: \"memory\");\n"
    "  w = s2[l];\n"
    "  o[2 * get_global_id(0)] = v; o[2 * get_global_id(0) + 1] = w;\n"
    "}\n";

static char *replace(const char *s, const char *from, const char *to);

/* Builds src and returns its program binary (NVIDIA: PTX text), NUL-ended;
 * NULL with the build log printed if the build fails. */
static char *source_ptx(cl_context c, cl_device_id d, const char *src, const char *what) {
    cl_int e;
    cl_program p = clCreateProgramWithSource(c, 1, &src, NULL, &e);
    if (clBuildProgram(p, 1, &d, "", NULL, NULL) != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(p, d, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        printf("%s: source build failed: %s\n", what, log);
        return NULL;
    }
    size_t len = 0;
    clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL);
    unsigned char *bin = malloc(len + 1);
    clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL);
    bin[len] = 0;
    clReleaseProgram(p);
    return (char *)bin;
}


/* Rebuilds kernel `name` of CLU from its PTX with ".reqnctapercluster 2, 1, 1"
 * inserted before the entry's body; NULL if that fails. */
static cl_kernel cluster_kernel(cl_context c, cl_device_id d, const char *name) {
    cl_int e;
    const char *ptx = source_ptx(c, d, CLU, "cluster");
    if (!ptx) return NULL;
    char pat[64];
    snprintf(pat, sizeof pat, ".entry %s(", name);
    const char *entry = strstr(ptx, pat);
    const char *body = entry ? strstr(entry, ")\n") : NULL;
    if (!body) { printf("cluster %s: entry not found\n", name); return NULL; }
    size_t at = (size_t)(body - ptx) + 2;
    char *out = malloc(strlen(ptx) + 64);
    memcpy(out, ptx, at);
    strcpy(out + at, ".reqnctapercluster 2, 1, 1\n");
    strcat(out, ptx + at);
    size_t sl = strlen(out) + 1;
    const unsigned char *bp = (const unsigned char *)out;
    cl_int bst;
    cl_program p2 = clCreateProgramWithBinary(c, 1, &d, &sl, &bp, &bst, &e);
    if (e != CL_SUCCESS || clBuildProgram(p2, 1, &d, "", NULL, NULL) != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(p2, d, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        printf("cluster %s: build from PTX failed (%d): %s\n", name, e, log);
        return NULL;
    }
    return clCreateKernel(p2, name, &e);
}

/* Launches 8 work-groups of 64 of kernel `name` (2 words out per group for
 * clu, per work-item for dsm) and reads the output back. */
static int cluster_run(cl_context c, cl_command_queue q, cl_kernel k, cl_uint *h, size_t words) {
    cl_int e;
    cl_mem o = clCreateBuffer(c, CL_MEM_READ_WRITE, words * 4, NULL, &e);
    for (size_t i = 0; i < words; i++) h[i] = 777;
    clEnqueueWriteBuffer(q, o, CL_TRUE, 0, words * 4, h, 0, NULL, NULL);
    clSetKernelArg(k, 0, sizeof o, &o);
    size_t g = 8 * 64, l = 64;
    cl_int el = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
    cl_int er = clEnqueueReadBuffer(q, o, CL_TRUE, 0, words * 4, h, 0, NULL, NULL);
    printf("  launch %d, read %d\n", el, er);
    clReleaseMemObject(o);
    return el == CL_SUCCESS && er == CL_SUCCESS;
}

static void try_cluster(cl_context c, cl_device_id d, cl_command_queue q) {
    cl_uint h[2 * 8 * 64];
    cl_kernel k = cluster_kernel(c, d, "clu");
    if (k) {
        int ok = cluster_run(c, q, k, h, 16);
        for (int i = 0; i < 8 && ok; i++) ok = h[2 * i] == (cl_uint)(i % 2) && h[2 * i + 1] == (cl_uint)(i / 2);
        printf("cluster: (rank, cluster id) of groups 0..7:");
        for (int i = 0; i < 8; i++) printf(" (%u,%u)", h[2 * i], h[2 * i + 1]);
        printf(" -> %s\n", ok ? "clusters of 2" : "NOT clusters of 2");
    }
    k = cluster_kernel(c, d, "dsm");
    if (k) {
        int ok = cluster_run(c, q, k, h, 2 * 8 * 64);
        for (int i = 0; i < 8 * 64 && ok; i++) {
            const cl_uint peer = (cl_uint)((i / 64) % 2 ^ 1), l = (cl_uint)(i % 64);
            ok = h[2 * i] == peer * 1000 + l && h[2 * i + 1] == (1 - peer) * 1000 + l + 7;
        }
        printf("distributed local memory (ld/st.shared::cluster): group 0 item 0 read %u, got %u -> %s\n",
               h[0], h[1], ok ? "correct" : "WRONG");
    }
}

/* Is CUDA's driver library there, and does cuTensorMapEncodeTiled (host-only
 * encoding of a TMA descriptor) work without a CUDA context? */
static void try_tensormap(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) { printf("tensor map: libcuda.so.1 not loadable: %s\n", dlerror()); return; }
    typedef int (*enc_t)(void *, int, unsigned, void *, const unsigned long long *,
                         const unsigned long long *, const unsigned *, const unsigned *, int, int,
                         int, int);
    enc_t enc = (enc_t)dlsym(lib, "cuTensorMapEncodeTiled");
    if (!enc) { printf("tensor map: no cuTensorMapEncodeTiled\n"); return; }
    _Alignas(64) unsigned char map[128];
    unsigned long long dims[2] = {4096, 4096}, strides[1] = {8192};
    unsigned box[2] = {64, 128}, es[2] = {1, 1};
    /* bf16 = 9, interleave none 0, swizzle 128B = 3, L2 promotion 128B = 2, oob fill none 0 */
    int r = enc(map, 9, 2, (void *)(size_t)0x7f0000000000ull, dims, strides, box, es, 0, 3, 2, 0);
    printf("tensor map: cuTensorMapEncodeTiled -> %d%s\n", r, r == 0 ? " (encodes without a context)" : "");
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    if (!p) return NULL;
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    memcpy(r, s, (size_t)(p - s));
    strcpy(r + (p - s), to);
    strcat(r, p + strlen(from));
    return r;
}

static int try_ptx(cl_context c, cl_device_id d, cl_command_queue q, const char *name,
                   const char *ptx) {
    size_t len = strlen(ptx) + 1;
    const unsigned char *bin = (const unsigned char *)ptx;
    cl_int bst, e;
    cl_program p = clCreateProgramWithBinary(c, 1, &d, &len, &bin, &bst, &e);
    if (e != CL_SUCCESS) { printf("%s: create from binary failed %d/%d\n", name, e, bst); return 1; }
    e = clBuildProgram(p, 1, &d, "", NULL, NULL);
    char log[8192] = "";
    clGetProgramBuildInfo(p, d, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
    if (e != CL_SUCCESS) { printf("%s: build failed %d\n%s\n", name, e, log); return 1; }
    cl_kernel k = clCreateKernel(p, "probe", &e);
    cl_mem o = clCreateBuffer(c, CL_MEM_READ_WRITE, 64 * 4, NULL, &e);
    clSetKernelArg(k, 0, sizeof o, &o);
    size_t g = 64, l = 64;
    e = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
    float h[64];
    cl_int e2 = clEnqueueReadBuffer(q, o, CL_TRUE, 0, sizeof h, h, 0, NULL, NULL);
    int ok = e == CL_SUCCESS && e2 == CL_SUCCESS;
    for (int i = 0; i < 64 && ok; i++) ok = h[i] == 2.0f * i;
    printf("%s: built, launch %d, read %d, output %s\n", name, e, e2, ok ? "correct" : "WRONG");
    clReleaseMemObject(o); clReleaseKernel(k); clReleaseProgram(p);
    return !ok;
}

int main(void) {
    cl_platform_id pl[8]; cl_uint np = 0;
    clGetPlatformIDs(8, pl, &np);
    cl_device_id d = NULL;
    for (cl_uint i = 0; i < np && !d; i++)
        if (clGetDeviceIDs(pl[i], CL_DEVICE_TYPE_GPU, 1, &d, NULL) != CL_SUCCESS) d = NULL;
    if (!d) { printf("no GPU\n"); return 1; }
    cl_int e;
    cl_context c = clCreateContext(NULL, 1, &d, NULL, NULL, &e);
    cl_command_queue q = clCreateCommandQueue(c, d, 0, &e);
    try_dyn(c, d, q); /* first: variant B may leave the context broken */
    try_cluster(c, d, q);
    try_tensormap();
    const char *ptx = source_ptx(c, d, SRC, "probe");
    if (!ptx) return 1;
    for (const char *l = ptx; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, ".version", 8) || !strncmp(l, ".target", 7))
            printf("source PTX: %.*s\n", (int)(strcspn(l, "\n")), l);
    int bad = try_ptx(c, d, q, "reload as is", ptx);
    char *a = replace(ptx, ".target sm_90", ".target sm_90a");
    if (a) bad |= try_ptx(c, d, q, "A: .target sm_90a", a);
    char *b = a ? replace(a, "membar.cta; // BINV_MARK", "wgmma.fence.sync.aligned;") : NULL;
    if (b) {
        /* wgmma needs PTX ISA >= 8.0 */
        char *v = strstr(b, ".version ");
        if (v && v[9] >= '1' && v[9] < '8' && v[10] == '.') { v[9] = '8'; v[11] = '0'; }
        bad |= try_ptx(c, d, q, "B: sm_90a + wgmma.fence", b);
    } else printf("B: marker not found in PTX\n");
    return bad;
}
