set terminal pngcairo size 900,600 font 'sans,11'
set output 'loss.png.tmp'
set grid
set key outside right
set datafile separator ','
set xlabel 'step'
set ylabel 'bits per byte'
set y2label 'fact accuracy'
set y2tics
set y2range [0:1]
plot 'loss.csv' skip 1 using 1:2 with linespoints title 'training (smoothed)', '' skip 1 using 1:3 with linespoints title 'held-out text', '' skip 1 using 1:4 axes x1y2 with linespoints title 'facts recalled'
