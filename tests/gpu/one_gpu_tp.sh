#!/usr/bin/env bash
# TP 2 as two MPI ranks on one GPU (collectives staged through host memory: NCCL refuses two
# ranks on one device) with GPU sampling — vocab-parallel: each rank reduces its logit slice with
# the SampleSlice kernel, rows without a small top-k gather and run the Sample kernel — against
# the same group sampling on the host (every row gathered, the CPU sampler). Greedy, top-k 8 and
# top-p rows: the same tokens and top-logprob ids, logprobs within 1e-4. Exits 77 (ctest:
# skipped) without a GPU.
#   one_gpu_tp.sh OLMO_GENERATE MODEL_DIR MPIRUN_SH
set -euo pipefail
GEN=$1 MODEL=$2 MPIRUN=$3
gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
if [ "${gpus:-0}" -lt 1 ]; then
  echo "SKIP: needs a GPU, found none"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/batch.jsonl" <<'JSON'
{"prompt_ids":[1,2,3,4,5,6,7],"temperature":0,"logprobs":3}
{"prompt_ids":[9,8,7,6],"temperature":0.8,"top_k":8,"seed":5,"logprobs":2}
{"prompt_ids":[3,1,4,1,5,9,2,6],"temperature":0.9,"top_p":0.9,"seed":7,"logprobs":1}
JSON
run() {
  CUDA_VISIBLE_DEVICES=0 bash "$MPIRUN" 2 "$GEN" --model "$MODEL" --device cuda --tp 2 \
    --collectives host --batch "$TMP/batch.jsonl" --max-tokens 16 --ignore-eos \
    --watchdog-seconds 60 "$@"
}
run --sampling device > "$TMP/device.json" 2> "$TMP/device.err" ||
  { cat "$TMP/device.err"; exit 1; }
run --sampling host > "$TMP/host.json" 2> "$TMP/host.err" || { cat "$TMP/host.err"; exit 1; }
python3 - "$TMP/device.json" "$TMP/host.json" <<'PY'
import json, sys
dev, host = ([json.loads(l) for l in open(p).read().splitlines() if l.strip()] for p in sys.argv[1:3])
assert len(dev) == len(host) == 3, (len(dev), len(host))
worst = 0.0
for i, (a, b) in enumerate(zip(dev, host)):
    assert a["token_ids"] == b["token_ids"], (i, a["token_ids"], b["token_ids"])
    worst = max([worst] + [abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"])])
    for ta, tb in zip(a["top_logprobs"], b["top_logprobs"]):
        assert [t["id"] for t in ta] == [t["id"] for t in tb], (i, ta, tb)
        worst = max([worst] + [abs(x["logprob"] - y["logprob"]) for x, y in zip(ta, tb)])
assert worst <= 1e-4, worst
print(f"ONE_GPU_TP_OK: 3 x 16 tokens equal, max |dlogprob| {worst:.3g}")
PY
