#!/usr/bin/env bash
# Decode step time of worker groups (tp x pp under mpirun) on one checkpoint, with each rank's
# busy time and bytes sent per step (Comm counters). A benchmark, not a test.
#   bash tools/bench/group_bench.sh MODEL_DIR [BUILD_DIR]
# Decode step time = (time for 24 tokens - time for 8 tokens) / 16, one sequence, greedy.
set -euo pipefail
MODEL=$1
BUILD=${2:-build}
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
GEN="$BUILD/tools/olmo-generate/olmo-generate"
PROMPT=1,2,3,4,5,6,7,8
secs() {  # NP TP PP MAX_TOKENS -> seconds of the generation loop (leader's log)
  local np=$1 tp=$2 pp=$3 n=$4 out
  if [ "$np" -eq 1 ]; then
    out=$("$GEN" --model "$MODEL" --prompt-ids $PROMPT --temperature 0 --ignore-eos --max-tokens "$n" 2>&1 >/dev/null)
  else
    out=$(bash "$ROOT/deploy/local/mpirun.sh" "$np" "$GEN" --model "$MODEL" --prompt-ids $PROMPT \
          --temperature 0 --ignore-eos --max-tokens "$n" --tp "$tp" --pp "$pp" --report-ranks 2>&1 >/dev/null)
    echo "$out" | grep -E "^rank [0-9]" | sed 's/^/    /' >&2
  fi
  echo "$out" | grep -oE "steps in [0-9.]+ s" | grep -oE "[0-9.]+ s" | cut -d' ' -f1
}
printf "%-10s %14s\n" "tp x pp" "decode ms/step"
for cfg in "1 1" "2 1" "4 1" "1 2" "2 2"; do
  set -- $cfg
  np=$(($1 * $2))
  a=$(secs "$np" "$1" "$2" 8)
  b=$(secs "$np" "$1" "$2" 24)
  printf "%-10s %14.1f\n" "$1 x $2" "$(echo "($b - $a) * 1000 / 16" | bc -l)"
done
