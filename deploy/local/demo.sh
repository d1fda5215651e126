#!/usr/bin/env bash
# Builds Olmo Serve if needed, creates the built-in tiny demo checkpoint (random weights, made by
# make-tiny) if missing, and runs olmo-generate on it. Extra arguments go to olmo-generate.
#   bash deploy/local/demo.sh                      # greedy, 16 tokens from a fixed prompt
#   bash deploy/local/demo.sh --temperature 0.8 --seed 7 --logprobs 3
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build}"
MODEL="${DEMO_MODEL:-$ROOT/demo-model}"

if [ ! -x "$BUILD/tools/olmo-generate/olmo-generate" ] || [ ! -x "$BUILD/tools/make-tiny/make-tiny" ]; then
  echo "demo: building (first run only)..." >&2
  bash "$ROOT/deploy/install-deps.sh" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  cmake --build "$BUILD" -j"$(nproc)" --target olmo-generate make-tiny >&2
fi
if [ ! -f "$MODEL/config.json" ]; then
  echo "demo: creating the tiny demo checkpoint in $MODEL" >&2
  "$BUILD/tools/make-tiny/make-tiny" --preset tiny-demo --out "$MODEL" >&2
fi
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--temperature 0 --max-tokens 16)
exec "$BUILD/tools/olmo-generate/olmo-generate" --model "$MODEL" \
  --prompt-ids 100264,882,198,3923,374,279,6864,315,9822,30,100265,198 "${ARGS[@]}"
