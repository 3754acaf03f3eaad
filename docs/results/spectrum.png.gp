set terminal pngcairo size 900,600 font 'sans,11' noenhanced
set output 'spectrum.png.tmp'
set grid
set key outside right
set title 'Calibration covariance spectra (eigenvalue / largest)'
set xlabel 'index (descending)'
set ylabel 'lambda_i / lambda_1'
set logscale y
titles = 'block0.attn_in block3.attn_in block0.down_in block3.down_in '
plot for [i=0:3] 'spectrum.dat' index i using 1:2 with lines lw 2 title word(titles, i+1)
