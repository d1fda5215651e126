#!/usr/bin/env bash
# Registers and spills of every kernel in kernels/cuda/*.cu from `ptxas -v` (sm_90 by default).
# Fails when a kernel of attention.cu or matmul.cu spills: those run on every token and a spill
# there turns register traffic into local-memory traffic.
#   tools/cuda/ptxas_report.sh [NVCC] [ARCH]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
NVCC="${1:-nvcc}"
ARCH="${2:-sm_90}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
fail=0
for cu in "$ROOT"/kernels/cuda/*.cu; do
  name=$(basename "$cu" .cu)
  if ! "$NVCC" -std=c++20 -arch="$ARCH" -I"$ROOT" -Xptxas -v -c "$cu" -o "$OUT/$name.o" \
      --expt-relaxed-constexpr > "$OUT/$name.log" 2>&1; then
    cat "$OUT/$name.log"; echo "PTXAS_REPORT_FAILED: $name.cu does not compile"; exit 1
  fi
  # ptxas prints "Compiling entry function '<mangled>'" then "Used N registers, ..." and
  # "N bytes stack frame, N bytes spill stores, N bytes spill loads".
  awk -v file="$name" '
    /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
    /spill stores/ { split($0, a, ","); stores = a[2]; loads = a[3]; gsub(/[^0-9]/, "", stores); gsub(/[^0-9]/, "", loads) }
    /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15);
      printf "%-12s %-60.60s regs %4s spill stores %4s loads %4s\n", file, fn, regs, stores, loads;
      if ((file == "attention" || file == "matmul") && (stores + loads) > 0) print "SPILL " file " " fn }
  ' "$OUT/$name.log" | tee "$OUT/$name.report"
  if grep -q "^SPILL" "$OUT/$name.report"; then fail=1; fi
done
if [ "$fail" = 1 ]; then echo "PTXAS_REPORT_FAILED: spills in attention/matmul kernels"; exit 1; fi
echo "PTXAS_REPORT_OK ($ARCH)"
