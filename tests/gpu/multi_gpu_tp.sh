#!/usr/bin/env bash
# TP 2 on two GPUs with NCCL device collectives (--collectives nccl, plus GPU sampling) against
# the same group with its collectives staged through host memory over MPI (--collectives host):
# the same greedy tokens and logprobs within 1e-4. Exits 77 (ctest: skipped) with fewer than two
# GPUs.
#   multi_gpu_tp.sh OLMO_GENERATE MODEL_DIR MPIRUN_SH
set -euo pipefail
GEN=$1 MODEL=$2 MPIRUN=$3
gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
if [ "${gpus:-0}" -lt 2 ]; then
  echo "SKIP: needs 2 GPUs, found ${gpus:-0}"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run() {
  bash "$MPIRUN" 2 "$GEN" --model "$MODEL" --device cuda --tp 2 --prompt-ids 1,2,3,4,5,6,7 \
    --max-tokens 24 --temperature 0 --ignore-eos --watchdog-seconds 60 "$@"
}
run --collectives nccl --sampling device > "$TMP/nccl.json" 2> "$TMP/nccl.err" ||
  { cat "$TMP/nccl.err"; exit 1; }
run --collectives host > "$TMP/host.json" 2> "$TMP/host.err" || { cat "$TMP/host.err"; exit 1; }
grep -q "TP collectives: NCCL" "$TMP/nccl.err" || { echo "NCCL was not used"; cat "$TMP/nccl.err"; exit 1; }
python3 - "$TMP/nccl.json" "$TMP/host.json" <<'PY'
import json, sys
a, b = (json.loads(open(p).read().splitlines()[0]) for p in sys.argv[1:3])
assert a["token_ids"] == b["token_ids"], (a["token_ids"], b["token_ids"])
d = max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"]))
assert d <= 1e-4, d
print(f"MULTI_GPU_TP_OK: {len(a['token_ids'])} tokens equal, max |dlogprob| {d:.3g}")
PY
