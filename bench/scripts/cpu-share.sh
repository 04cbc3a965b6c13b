#!/usr/bin/env bash
# CPU used by each given process over a window, in % of one core (200% = both of 2 cores),
# from utime+stime in /proc/PID/stat (all threads of the process, not its children).
# Also the whole machine's busy share from /proc/stat.
# Usage: cpu-share.sh DELAY WINDOW name=pid [name=pid ...]
set -euo pipefail
delay=$1 window=$2; shift 2
sleep "$delay"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys() { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=NF;i++) t+=$i; print t, idle}' /proc/stat; }
declare -A a
for x in "$@"; do a[$x]=$(ticks "${x#*=}"); done
read -r t0 i0 < <(sys)
sleep "$window"
read -r t1 i1 < <(sys)
out=""
for x in "$@"; do
  b=$(ticks "${x#*=}")
  out+="${x%%=*}=$(awk -v d=$((b - ${a[$x]})) -v hz="$hz" -v w="$window" 'BEGIN{printf "%.0f%%", 100*d/hz/w}') "
done
out+="machine_busy=$(awk -v dt=$((t1 - t0)) -v di=$((i1 - i0)) 'BEGIN{printf "%.0f%%", 100*(dt-di)/dt}')(of 2 cores)"
echo "$out"
