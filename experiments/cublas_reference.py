#!/usr/bin/env python3
"""cuBLAS reference timings (torch.mm) for the shapes binv-bench measures.

Optional: needs a CUDA build of PyTorch (the lent H100 has one).  Measures
C[m, n] = A[m, k] @ W[n, k]^T in f32 (TF32 off), f16 and bf16, weights rotated
through enough copies to defeat the 50 MB L2 at small m, like binv-bench.
Also reports whether row 0 of C keeps its bits across m (cuBLAS is not
batch-invariant).  Writes CSV to stdout or --csv FILE.

    python3 experiments/cublas_reference.py --csv cublas.csv
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="1,2,4,8,16,32,64,128,512,2048,4096")
    ap.add_argument("--nk", default="4096x4096,4096x14336,14336x4096")
    ap.add_argument("--dtype", default="f32,f16,bf16")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("cublas_reference: no torch here; nothing measured", file=sys.stderr)
        return 0
    if not torch.cuda.is_available():
        print("cublas_reference: torch has no CUDA device; nothing measured", file=sys.stderr)
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    types = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
    out = open(a.csv, "w") if a.csv else sys.stdout
    out.write("device,dtype,impl,m,n,k,ms,tflops,weight_tbs,row0_same_as_m1\n")
    name = torch.cuda.get_device_name(0)
    for dn in a.dtype.split(","):
        dt = types[dn]
        es = torch.tensor([], dtype=dt).element_size()
        for nk in a.nk.split(","):
            n, k = (int(x) for x in nk.split("x"))
            copies = max(1, (256 << 20) // (n * k * es))  # > 200 MB of weights in rotation
            g = torch.Generator(device=dev).manual_seed(1)
            ws = [torch.randn(n, k, device=dev, dtype=dt, generator=g) for _ in range(copies)]
            amax = torch.randn(max(int(x) for x in a.m.split(",")), k, device=dev, dtype=dt,
                               generator=g)
            row0 = None
            for ms in a.m.split(","):
                m = int(ms)
                x = amax[:m]
                for i in range(3):
                    torch.mm(x, ws[i % copies].t())
                torch.cuda.synchronize()
                r0 = torch.mm(x, ws[0].t())[0].clone()
                same = True
                if row0 is None:
                    row0 = r0
                else:
                    same = bool(torch.equal(row0.view(torch.int16 if es == 2 else torch.int32),
                                            r0.view(torch.int16 if es == 2 else torch.int32)))
                times = []
                for rep in range(a.reps):
                    inner = 20
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for i in range(inner):
                        torch.mm(x, ws[(rep * inner + i) % copies].t())
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) / inner)
                times.sort()
                t = times[len(times) // 2]
                out.write("%s,%s,cublas,%d,%d,%d,%.5f,%.2f,%.3f,%s\n" % (
                    name, dn, m, n, k, t * 1e3, 2.0 * m * n * k / t / 1e12,
                    n * k * es / t / 1e12, "yes" if same else "NO"))
                out.flush()
            del ws
    return 0


if __name__ == "__main__":
    sys.exit(main())
