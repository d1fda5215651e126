#!/usr/bin/env bash
# A worker group whose rank 1 is SIGSTOPped mid-generation must exit non-zero (the watchdog of the
# ranks waiting on it aborts the job) within the watchdog timeout plus slack, leaving no process.
#   expect_stalled_rank_abort.sh OLMO_GENERATE MODEL_DIR MPIRUN_SH
set -u
GEN=$1 MODEL=$2 MPIRUN=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Enough work that the group is still generating when rank 1 is stopped.
python_free_batch="$TMP/batch.jsonl"
for i in $(seq 1 400); do echo "{\"prompt_ids\": [1, 2, 3, $((i % 300))], \"max_tokens\": 250}"; done > "$python_free_batch"
start=$(date +%s)
bash "$MPIRUN" 2 "$GEN" --model "$MODEL" --batch "$python_free_batch" --ignore-eos --tp 2 \
  --watchdog-seconds 3 --max-batch-tokens 1 > "$TMP/out" 2> "$TMP/err" &
launcher=$!
# Find rank 1 by its environment once it runs, then stop it.
victim=""
for _ in $(seq 100); do
  for p in $(pgrep -x olmo-generate || true); do
    if tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
      victim=$p
    fi
  done
  [ -n "$victim" ] && break
  sleep 0.1
done
if [ -z "$victim" ]; then echo "rank 1 never started"; cat "$TMP/err"; exit 1; fi
sleep 0.5
kill -STOP "$victim"
for _ in $(seq 300); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$launcher" 2>/dev/null; then
  echo "group still running 30 s after rank 1 stopped"; kill -9 "$victim" 2>/dev/null; kill "$launcher"; exit 1
fi
wait "$launcher"; rc=$?
kill -CONT "$victim" 2>/dev/null; kill -9 "$victim" 2>/dev/null
elapsed=$(( $(date +%s) - start ))
grep -q "watchdog: rank" "$TMP/err" || { echo "no watchdog report"; cat "$TMP/err"; exit 1; }
if [ "$rc" -eq 0 ]; then echo "group exited 0"; exit 1; fi
# No live process may remain (exited children that init has not reaped yet are state Z).
for _ in $(seq 20); do ps -C olmo-generate -o stat= | grep -qv '^Z' || break; sleep 0.1; done
if ps -C olmo-generate -o stat= | grep -qv '^Z'; then
  echo "processes left behind"; ps -C olmo-generate -o pid,stat,args; exit 1
fi
echo "STALLED_RANK_ABORTED rc=$rc after ${elapsed}s"
