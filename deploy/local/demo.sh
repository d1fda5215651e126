#!/usr/bin/env bash
# Builds Olmo Serve if needed, creates the built-in tiny demo checkpoint (random weights, made by
# make-tiny, with the real Olmo 3 tokenizer and chat template) if missing, and runs olmo-generate
# on it. Extra arguments replace the default ones.
#   bash deploy/local/demo.sh                      # greedy, 16 tokens, one chat turn
#   bash deploy/local/demo.sh --prompt "Once upon a time" --temperature 0.8 --seed 7
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
if [ ! -f "$MODEL/config.json" ] || [ ! -f "$MODEL/tokenizer.json" ]; then
  echo "demo: creating the tiny demo checkpoint in $MODEL (real Olmo 3 tokenizer)" >&2
  "$BUILD/tools/make-tiny/make-tiny" --preset tiny-demo --out "$MODEL" \
    --tokenizer "$ROOT/tests/data/tokenizer/olmo3_instruct.tokenizer.json" \
    --chat-template "$ROOT/tests/data/tokenizer/chat_templates/olmo_instruct.jinja" >&2
fi
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--chat "What is the capital of France?" --temperature 0 --max-tokens 16)
exec "$BUILD/tools/olmo-generate/olmo-generate" --model "$MODEL" "${ARGS[@]}"
