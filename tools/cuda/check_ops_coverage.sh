#!/usr/bin/env bash
# Every op of kernels/ops.h (each pure virtual method of class Ops) must have its CUDA file
# kernels/cuda/<op>.cu and a gpu-labelled test in tests/gpu that calls it on the CUDA backend
# (DESIGN.md §7.1: one op, one name, CPU + CUDA + test). Fails naming every gap.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OPS_H="$ROOT/kernels/ops.h"
# Ops method -> the file (and op name) it lives in; several methods may share one op file.
file_of() {
  case "$1" in
    PackWeight|Matmul) echo matmul ;;
    SumSquares|RmsScale|RmsNorm) echo rms_norm ;;
    KvWrite) echo kv_write ;;
    SwiGlu) echo swiglu ;;
    LogSoftmax) echo log_softmax ;;
    *) echo "$1" | sed -E 's/([a-z0-9])([A-Z])/\1_\2/g' | tr 'A-Z' 'a-z' ;;
  esac
}
# The ops are the PURE virtual methods of class Ops (`virtual ... Name(...) = 0;`, possibly over
# several lines). Methods with a default body (on_device, Alloc, Free, Copy, Zero, Synchronize:
# the backend memory API) are not ops and have no op file. Comments are dropped first, then the
# class body is cut into statements at ';'.
methods=$(sed -n '/^class Ops {/,/^};/p' "$OPS_H" | sed 's://.*$::' | tr '\n' ' ' | tr ';' '\n' |
          grep -E '^[[:space:]]*virtual[^{]*\)[[:space:]]*(const[[:space:]]*)?=[[:space:]]*0[[:space:]]*$' |
          sed -E 's/^[[:space:]]*virtual[^(]*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)\(.*/\1/' | sort -u)
[ -n "$methods" ] || { echo "no Ops methods found in $OPS_H" >&2; exit 1; }
gaps=0
for m in $methods; do
  f=$(file_of "$m")
  if [ ! -f "$ROOT/kernels/cuda/$f.cu" ]; then
    echo "GAP: Ops::$m has no kernels/cuda/$f.cu"; gaps=$((gaps + 1))
  fi
  if [ ! -f "$ROOT/kernels/cpu/$f.cc" ]; then
    echo "GAP: Ops::$m has no kernels/cpu/$f.cc"; gaps=$((gaps + 1))
  fi
  if ! grep -qE "gpu_->$m\(" "$ROOT"/tests/gpu/*_test.cc; then
    echo "GAP: Ops::$m is not called on the CUDA backend by any tests/gpu test"; gaps=$((gaps + 1))
  fi
  echo "ok-check: $m -> kernels/cuda/$f.cu"
done
if [ "$gaps" -gt 0 ]; then echo "OPS_COVERAGE_FAILED: $gaps gaps"; exit 1; fi
echo "OPS_COVERAGE_OK: $(echo "$methods" | wc -w) ops"
