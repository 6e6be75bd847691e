#!/usr/bin/env python3
"""Draws binv-bench GEMM plots (GFLOP/s against m, one line per implementation)
from its CSV, optionally with experiments/cublas_reference.py's CSV as one more
line, through bench/plot.gp and gnuplot.  For runs on machines without
gnuplot (the lent GPU):  python3 experiments/plot_results.py gemm.csv [cublas.csv] OUTDIR
"""
import csv
import os
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = sys.argv[-1]
    os.makedirs(outdir, exist_ok=True)
    rows = []
    for path in sys.argv[1:-1]:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r.get("status", "ok") != "ok":
                    continue
                gf = float(r["gflops"]) if "gflops" in r else float(r["tflops"]) * 1e3
                rows.append((r["dtype"], int(r["n"]), int(r["k"]), r["impl"], int(r["m"]), gf))
    gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench", "plot.gp")
    shapes = sorted({(d, n, k) for d, n, k, *_ in rows})
    for d, n, k in shapes:
        sel = [r for r in rows if r[:3] == (d, n, k)]
        impls = sorted({r[3] for r in sel}, key=lambda s: (s != "clblast", s != "cublas", s))
        ms = sorted({r[4] for r in sel})
        val = {(r[3], r[4]): r[5] for r in sel}
        base = os.path.join(outdir, "gemm-%s-%dx%d" % (d, n, k))
        with open(base + ".dat", "w") as f:
            f.write("m " + " ".join(impls) + "\n")
            for m in ms:
                f.write("%d %s\n" % (m, " ".join("%.3f" % val[(i, m)] if (i, m) in val else "?"
                                                for i in impls)))
        subprocess.run(["gnuplot", "-e", "datafile='%s.dat'" % base,
                        "-e", "outfile='%s.png'" % base,
                        "-e", "plottitle='GEMM %s, n=%d, k=%d (H100)'" % (d, n, k),
                        "-e", "ncol=%d" % (len(impls) + 1), gp], check=True)
        print(base + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
