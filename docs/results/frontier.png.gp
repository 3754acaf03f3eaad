set terminal pngcairo size 1500,600 font 'sans,11' noenhanced
set output 'frontier.png.tmp'
set grid
set key outside right
set multiplot layout 1,2 title 'Knowledge kept against task learned (each method at its learning rates)'
set xlabel 'held-out addition, exact match'
set ylabel 'facts recalled after fine-tuning'
set xrange [0:1]
set yrange [0:1]
set key inside top right font ',9'
set arrow from graph 0, first 1.000000 to graph 1, first 1.000000 nohead dt 3 lc rgb 'gray'
set title 'rank 8'
plot 'frontier.dat' index 0 using 1:2:4:5 with xyerrorlines pt 7 title 'lora-null-v2', 'frontier.dat' index 1 using 1:2:4:5 with xyerrorlines pt 7 title 'corda', 'frontier.dat' index 2 using 1:2:4:5 with xyerrorlines pt 7 title 'lora', 'frontier.dat' index 3 using 1:2:4:5 with xyerrorlines pt 7 title 'milora', 'frontier.dat' index 4 using 1:2:4:5 with xyerrorlines pt 7 title 'lora-null-v1', 'frontier.dat' index 5 using 1:2:4:5 with xyerrorlines pt 7 title 'pissa', 'frontier.dat' index 6 using 1:2:4:5 with xyerrorlines pt 7 title 'full', 'frontier.dat' index 7 using 1:2 with lines dt 2 lw 2 lc rgb 'black' title 'Pareto frontier'
set title 'rank 32'
plot 'frontier.dat' index 8 using 1:2:4:5 with xyerrorlines pt 7 title 'lora-null-v2', 'frontier.dat' index 9 using 1:2:4:5 with xyerrorlines pt 7 title 'corda', 'frontier.dat' index 10 using 1:2:4:5 with xyerrorlines pt 7 title 'lora', 'frontier.dat' index 11 using 1:2:4:5 with xyerrorlines pt 7 title 'milora', 'frontier.dat' index 12 using 1:2:4:5 with xyerrorlines pt 7 title 'lora-null-v1', 'frontier.dat' index 13 using 1:2:4:5 with xyerrorlines pt 7 title 'pissa', 'frontier.dat' index 14 using 1:2:4:5 with xyerrorlines pt 7 title 'full', 'frontier.dat' index 15 using 1:2 with lines dt 2 lw 2 lc rgb 'black' title 'Pareto frontier'
unset multiplot
