#!/usr/bin/env bash
# Samples VmRSS (and VmHWM) of the given PIDs every INTERVAL seconds into a CSV on stdout,
# until DURATION seconds have passed or a process is gone.
# Usage: rss-sample.sh INTERVAL DURATION name=pid [name=pid ...] > rss.csv
set -euo pipefail
interval=$1 duration=$2; shift 2
names=() pids=()
for a in "$@"; do names+=("${a%%=*}"); pids+=("${a#*=}"); done
header="t_s"; for n in "${names[@]}"; do header+=",${n}_rss_kib,${n}_hwm_kib"; done
echo "$header"
start=$(date +%s)
while :; do
  now=$(date +%s); t=$((now - start)); line="$t"
  for p in "${pids[@]}"; do
    [ -r "/proc/$p/status" ] || exit 0
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status"); hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status")
    line+=",$rss,$hwm"
  done
  echo "$line"
  [ "$t" -ge "$duration" ] && break
  sleep $((interval - ($(date +%s) - now)))
done
