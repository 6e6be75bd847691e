# plot.gp - GFLOP/s against m (log2 x axis), one line per implementation.
#
# binv-bench --plot DIR writes one data file per (dtype, n, k) into DIR, this
# script next to them, and runs, for each data file:
#   gnuplot -e "datafile='DIR/gemm-f32-4096x4096.dat'" \
#           -e "outfile='DIR/gemm-f32-4096x4096.png'" \
#           -e "plottitle='...'" -e "ncol=4" DIR/plot.gp
# It can be rerun by hand the same way.  Data file: whitespace separated, first
# line "m impl1 impl2 ...", then one line per m with GFLOP/s, '?' = no value.

if (!exists("datafile")) datafile = 'gemm.dat'
if (!exists("outfile")) outfile = 'gemm.png'
if (!exists("plottitle")) plottitle = 'binv-bench GEMM'
if (!exists("ncol")) ncol = 4

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1000,620 noenhanced font ",11"
} else {
    set terminal png size 1000,620 noenhanced
}
set output outfile
set title plottitle noenhanced
set logscale x 2
set format x "%g"
set xlabel "m (rows of A: tokens in the batch)"
set ylabel "GFLOP/s (2mnk / time)"
set yrange [0:*]
set key top left box opaque
set grid xtics ytics
set datafile missing '?'
plot for [i=2:ncol] datafile using 1:i with linespoints lw 2 pt 7 ps 0.8 title columnheader(i)
