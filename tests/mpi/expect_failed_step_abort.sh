#!/usr/bin/env bash
# A step that fails on one rank alone (OLMO_FAULT_STEP_ERROR=RANK:STEP injects it) must end the
# whole worker group at once: non-zero exit, the rank's error on stderr, no process left, and well
# before the watchdog (60 s here) would have caught the ranks left waiting in that step's
# collectives. Covers a follower and the leader at tp 2, and every rank's position at tp 2 x pp 2.
# Then a failure after a rank's stage ran, at the final step: no result may leave the group.
#   expect_failed_step_abort.sh OLMO_GENERATE MODEL_DIR MPIRUN_SH
set -u
GEN=$1 MODEL=$2 MPIRUN=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for i in $(seq 1 16); do echo "{\"prompt_ids\": [1, 2, 3, $i], \"max_tokens\": 40}"; done > "$TMP/batch.jsonl"

# case: world size, tp, pp, fault spec
for c in "2 2 1 1:3" "2 2 1 0:3" "4 2 2 1:2" "4 2 2 2:4" "4 2 2 3:3" "4 2 2 0:5"; do
  read -r n tp pp spec <<<"$c"
  start=$(date +%s)
  OLMO_FAULT_STEP_ERROR=$spec bash "$MPIRUN" "$n" "$GEN" --model "$MODEL" --batch "$TMP/batch.jsonl" \
    --ignore-eos --tp "$tp" --pp "$pp" --watchdog-seconds 60 > "$TMP/out" 2> "$TMP/err" &
  launcher=$!
  for _ in $(seq 300); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$launcher" 2>/dev/null; then
    echo "tp $tp pp $pp fault $spec: group still running 30 s after the fault"
    pkill -9 -x olmo-generate; kill "$launcher"; exit 1
  fi
  wait "$launcher"; rc=$?
  elapsed=$(( $(date +%s) - start ))
  rank=${spec%%:*} step=${spec##*:}
  if [ "$rc" -eq 0 ]; then echo "tp $tp pp $pp fault $spec: exited 0"; cat "$TMP/err"; exit 1; fi
  grep -q "rank $rank: injected fault at step $step" "$TMP/err" ||
    { echo "tp $tp pp $pp fault $spec: the failing rank's error is not on stderr"; cat "$TMP/err"; exit 1; }
  grep -q "aborting the worker group" "$TMP/err" ||
    { echo "tp $tp pp $pp fault $spec: no abort report"; cat "$TMP/err"; exit 1; }
  if grep -q "watchdog: rank" "$TMP/err"; then
    echo "tp $tp pp $pp fault $spec: ended by the watchdog, not by the failing rank"; exit 1
  fi
  for _ in $(seq 20); do ps -C olmo-generate -o stat= | grep -qv '^Z' || break; sleep 0.1; done
  if ps -C olmo-generate -o stat= | grep -qv '^Z'; then
    echo "tp $tp pp $pp fault $spec: processes left behind"; ps -C olmo-generate -o pid,stat,args
    exit 1
  fi
  echo "tp $tp pp $pp fault $spec: rc $rc after ${elapsed} s"
done
# A rank that fails after its stage ran (an op error found at the step's last synchronization)
# at the final step: tp rank 0 must not return that step, so olmo-generate prints no output.
echo '{"prompt_ids": [1, 2, 3, 4], "max_tokens": 6}' > "$TMP/one.jsonl"  # steps 0-5
for c in "2 2 1 1:5:after" "4 2 2 3:5:after"; do
  read -r n tp pp spec <<<"$c"
  OLMO_FAULT_STEP_ERROR=$spec timeout 60 bash "$MPIRUN" "$n" "$GEN" --model "$MODEL" \
    --batch "$TMP/one.jsonl" --ignore-eos --tp "$tp" --pp "$pp" --watchdog-seconds 60 \
    > "$TMP/out" 2> "$TMP/err"
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "tp $tp pp $pp fault $spec: rc $rc"; cat "$TMP/err"; exit 1
  fi
  grep -q "injected fault after step 5" "$TMP/err" ||
    { echo "tp $tp pp $pp fault $spec: the failing rank's error is not on stderr"; cat "$TMP/err"; exit 1; }
  if [ -s "$TMP/out" ]; then
    echo "tp $tp pp $pp fault $spec: printed results of a group whose rank failed the step:"
    cat "$TMP/out"; exit 1
  fi
  echo "tp $tp pp $pp fault $spec: rc $rc, no output"
done
echo "FAILED_STEP_ABORTED"
