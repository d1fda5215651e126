#!/usr/bin/env bash
# Runs the Olmo Serve service on this machine: builds if needed, creates the built-in tiny demo
# checkpoint if missing (random weights, the real Olmo 3 tokenizer and chat template), starts
# olmo-coordinator and one worker group (olmo-worker under mpirun, tp 2 x pp 2 by default) on
# loopback, waits until it serves, and prints how to send a request. Ctrl-C (or SIGTERM) drains
# and stops everything.
#   bash deploy/local/serve.sh                         # the demo model, tp 2 x pp 2
#   bash deploy/local/serve.sh --model DIR --tp 1 --pp 1 --port 50051
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
MODEL=""
TP=2
PP=2
PORT=50051
KV_MIB=64
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --tp) TP="$2"; shift 2 ;;
    --pp) PP="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --kv-cache-mib) KV_MIB="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "serve: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

BINS=(olmo-coordinator olmo-worker olmo-cli make-tiny)
missing=0
for b in "${BINS[@]}"; do [ -x "$BUILD/tools/$b/$b" ] || missing=1; done
if [ "$missing" = 1 ]; then
  echo "serve: building (first run only)..." >&2
  bash "$ROOT/deploy/install-deps.sh" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  cmake --build "$BUILD" -j"$(nproc)" --target "${BINS[@]}" >&2
fi
if [ -z "$MODEL" ]; then
  MODEL="${DEMO_MODEL:-$ROOT/demo-model}"
  if [ ! -f "$MODEL/config.json" ] || [ ! -f "$MODEL/tokenizer.json" ]; then
    echo "serve: creating the tiny demo checkpoint in $MODEL (real Olmo 3 tokenizer)" >&2
    "$BUILD/tools/make-tiny/make-tiny" --preset tiny-demo --out "$MODEL" \
      --tokenizer "$ROOT/tests/data/tokenizer/olmo3_instruct.tokenizer.json" \
      --chat-template "$ROOT/tests/data/tokenizer/chat_templates/olmo_instruct.jinja" >&2
  fi
fi

RUN_DIR="$(mktemp -d /tmp/olmo-serve.XXXXXX)"
ADDR="$RUN_DIR/address.json"
COORD_PID=""
GROUP_PID=""
cleanup() {
  trap - INT TERM EXIT
  echo "serve: draining and stopping..." >&2
  [ -n "$COORD_PID" ] && kill -TERM "$COORD_PID" 2>/dev/null || true
  # The coordinator drains, then tells the group to shut down; give both time, then insist.
  for _ in $(seq 1 100); do
    kill -0 "$COORD_PID" 2>/dev/null || kill -0 "$GROUP_PID" 2>/dev/null || break
    if ! kill -0 "$COORD_PID" 2>/dev/null && ! kill -0 "$GROUP_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  [ -n "$GROUP_PID" ] && kill -KILL -- "-$GROUP_PID" 2>/dev/null || true
  [ -n "$COORD_PID" ] && kill -KILL "$COORD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$RUN_DIR"
  echo "serve: stopped" >&2
}
trap cleanup INT TERM EXIT

"$BUILD/tools/olmo-coordinator/olmo-coordinator" --model "$MODEL" \
  --listen "127.0.0.1:$PORT" --control-listen 127.0.0.1:0 --address-file "$ADDR" \
  --kv-cache-mib "$KV_MIB" --drain-seconds 10 &
COORD_PID=$!
for _ in $(seq 1 100); do [ -f "$ADDR" ] && break; sleep 0.1; done
[ -f "$ADDR" ] || { echo "serve: the coordinator did not start (port $PORT in use?)" >&2; exit 1; }
# The worker group in its own process group, so stopping it reaches every rank.
setsid bash "$ROOT/deploy/local/mpirun.sh" "$((TP * PP))" "$BUILD/tools/olmo-worker/olmo-worker" \
  --model "$MODEL" --tp "$TP" --pp "$PP" --coordinator-file "$ADDR" --group-name local &
GROUP_PID=$!
CLI="$BUILD/tools/olmo-cli/olmo-cli --server 127.0.0.1:$PORT"
for _ in $(seq 1 600); do
  $CLI health >/dev/null 2>&1 && break
  kill -0 "$GROUP_PID" 2>/dev/null || { echo "serve: the worker group exited" >&2; exit 1; }
  sleep 0.2
done
$CLI health >/dev/null 2>&1 || { echo "serve: not serving after 120 s" >&2; exit 1; }
cat <<MSG

Olmo Serve is running on 127.0.0.1:$PORT (model $MODEL, worker group tp $TP x pp $PP).
Send a request:
  $CLI generate "The capital of France is" --max-tokens 16 --temperature 0
  $CLI chat "What is the capital of France?" --max-tokens 32
  $CLI stats
Ctrl-C drains and stops the service.

MSG
wait "$COORD_PID"
