set terminal pngcairo size 1000,600 font 'sans,11' noenhanced
set output 'losses.png.tmp'
set grid
set key outside right
set title 'Fine-tuning loss (mean over seeds)'
set xlabel 'step'
set ylabel 'bits per byte'
set logscale y
titles = 'lora-null-v2/r32@0.003162 lora-null-v2/r32@0.005623 lora-null-v2/r32@0.01 lora-null-v2/r32@0.01778 lora-null-v2/r32@0.03162 corda/r32@0.0003162 corda/r32@0.0005623 corda/r32@0.001 corda/r32@0.001778 corda/r32@0.003162 lora/r32@0.0003162 lora/r32@0.0005623 lora/r32@0.001 lora/r32@0.001778 lora/r32@0.003162 milora/r32@0.0003162 milora/r32@0.0005623 milora/r32@0.001 milora/r32@0.001778 milora/r32@0.003162 lora-null-v1/r32@0.0003162 lora-null-v1/r32@0.0005623 lora-null-v1/r32@0.001 lora-null-v1/r32@0.001778 lora-null-v1/r32@0.003162 pissa/r32@0.0001 pissa/r32@0.0001778 pissa/r32@0.0003162 pissa/r32@0.0005623 pissa/r32@0.001 lora-null-v2/r8@0.01 lora-null-v2/r8@0.01778 lora-null-v2/r8@0.03162 lora-null-v2/r8@0.05623 lora-null-v2/r8@0.1 corda/r8@0.001 corda/r8@0.001778 corda/r8@0.003162 corda/r8@0.005623 corda/r8@0.01 lora/r8@0.001 lora/r8@0.001778 lora/r8@0.003162 lora/r8@0.005623 lora/r8@0.01 milora/r8@0.001 milora/r8@0.001778 milora/r8@0.003162 milora/r8@0.005623 milora/r8@0.01 lora-null-v1/r8@0.001 lora-null-v1/r8@0.001778 lora-null-v1/r8@0.003162 lora-null-v1/r8@0.005623 lora-null-v1/r8@0.01 pissa/r8@0.0003162 pissa/r8@0.0005623 pissa/r8@0.001 pissa/r8@0.001778 pissa/r8@0.003162 full@0.0001778 full@0.0003162 full@0.0005623 full@0.001 full@0.001778 lora/r32@0.005623 lora-null-v1/r32@0.005623 pissa/r32@0.001778 '
plot for [i=0:67] 'losses.dat' index i using 1:2 with lines title word(titles, i+1)
