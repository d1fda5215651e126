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
# A kernel's name shortened to its function name (demangled with c++filt from binutils when
# present), e.g. PagedAttentionKernel or RoundKernel<__nv_bfloat16>.
short_name() {
  if command -v c++filt > /dev/null; then
    echo "$1" | c++filt | sed -E 's/\(anonymous namespace\)/anon/g; s/\(.*//; s/.*::([^:]*)$/\1/'
  else
    echo "$1"
  fi
}
for cu in "$ROOT"/kernels/cuda/*.cu; do
  name=$(basename "$cu" .cu)
  if ! "$NVCC" -std=c++20 -arch="$ARCH" -I"$ROOT" -Xptxas -v -c "$cu" -o "$OUT/$name.o" \
      --expt-relaxed-constexpr > "$OUT/$name.log" 2>&1; then
    cat "$OUT/$name.log"; echo "PTXAS_REPORT_FAILED: $name.cu does not compile"; exit 1
  fi
  # ptxas prints "Compiling entry function '<mangled>'" then "Used N registers, ..." and
  # "N bytes stack frame, N bytes spill stores, N bytes spill loads".
  # One "file mangled_name regs spill_stores spill_loads" line per kernel.
  awk -v file="$name" '
    /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
    /spill stores/ { split($0, a, ","); stores = a[2]; loads = a[3]; gsub(/[^0-9]/, "", stores); gsub(/[^0-9]/, "", loads) }
    /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15);
      print file, fn, regs, stores, loads }
  ' "$OUT/$name.log" > "$OUT/$name.raw"
  : > "$OUT/$name.report"
  while read -r file fn regs stores loads; do
    printf "%-12s %-40s regs %4s spill stores %4s loads %4s\n" "$file" "$(short_name "$fn")" \
      "$regs" "$stores" "$loads" | tee -a "$OUT/$name.report"
    if [ "$file" = attention ] || [ "$file" = matmul ]; then
      if [ $((stores + loads)) -gt 0 ]; then
        echo "SPILL $file $(short_name "$fn")" | tee -a "$OUT/$name.report"
      fi
    fi
  done < "$OUT/$name.raw"
  if grep -q "^SPILL" "$OUT/$name.report"; then fail=1; fi
done
if [ "$fail" = 1 ]; then echo "PTXAS_REPORT_FAILED: spills in attention/matmul kernels"; exit 1; fi
echo "PTXAS_REPORT_OK ($ARCH)"
