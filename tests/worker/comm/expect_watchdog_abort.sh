#!/bin/sh
# Usage: expect_watchdog_abort.sh MPIEXEC BINARY
# Runs BINARY on 2 ranks; passes (prints WATCHDOG_ABORT_VERIFIED) only if mpirun exits non-zero,
# rank 0's watchdog logged the hung allreduce with the last step id, and the job died well before
# rank 1's 20 s sleep ended (so the abort came from the watchdog, not from the program finishing).
mpiexec="$1"
binary="$2"
log=$(mktemp)
start=$(date +%s)
OMPI_MCA_mpi_yield_when_idle=1 "$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$binary" \
  >"$log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$log"
fail() { echo "WATCHDOG_TEST_FAILED: $1"; rm -f "$log"; exit 1; }
[ "$rc" -ne 0 ] || fail "mpirun exited 0"
grep -q "rank 0: first allreduce done" "$log" || fail "the program did not run"
grep -q "watchdog: rank 0: allreduce of 4 bytes on comm tp\[stage 0\].*last step_id 124; aborting" \
  "$log" || fail "no watchdog log line"
grep -q "WATCHDOG_DID_NOT_FIRE" "$log" && fail "a rank finished the hung allreduce"
[ "$elapsed" -lt 15 ] || fail "took ${elapsed}s"
rm -f "$log"
echo "WATCHDOG_ABORT_VERIFIED rc=$rc elapsed=${elapsed}s"
