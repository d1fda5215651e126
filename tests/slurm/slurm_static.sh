#!/usr/bin/env bash
# Static checks of the Slurm deployment (deploy/slurm), no olmo binaries needed:
#   1. shellcheck of every deploy/slurm/*.sh, *.sbatch and tests/slurm/*.sh;
#   2. DRY_RUN=1 of each batch script outside Slurm: the printed tp/pp/ranks, srun geometry and
#      flags are checked, and impossible layouts must be refused;
#   3. `sbatch --test-only` of the 7B and 32B scripts against a private slurmctld whose config
#      declares fake 8-GPU nodes (Gres=gpu:8, Count-only gres.conf; no slurmd runs for them).
#      Needs root and Slurm (installed with deploy/slurm/install-slurm.sh when missing).
# Prints SLURM_STATIC_PASSED when everything passed.
#   bash tests/slurm/slurm_static.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SLURM_DIR="$ROOT/deploy/slurm"
FAILS=0
CLUSTER_DIR=""

fail() {
  echo "FAIL: $*" >&2
  FAILS=$((FAILS + 1))
}
pass() { echo "ok: $*"; }

cleanup() {
  if [ -n "$CLUSTER_DIR" ]; then
    OLMO_SLURM_DIR="$CLUSTER_DIR" OLMO_SLURM_NO_SLURMD=1 bash "$SLURM_DIR/local-cluster.sh" stop || true
    rm -rf "$CLUSTER_DIR"
  fi
}
trap cleanup EXIT

check_shellcheck() {
  command -v shellcheck >/dev/null || bash "$SLURM_DIR/install-slurm.sh"
  local files=("$SLURM_DIR"/*.sh "$SLURM_DIR"/*.sbatch "$ROOT"/tests/slurm/*.sh)
  # -x follows `. lib.sh` (source-path=SCRIPTDIR in the .sbatch files).
  if shellcheck -x "${files[@]}"; then
    pass "shellcheck of ${#files[@]} files"
  else
    fail "shellcheck"
  fi
}

# Runs batch script $1 with DRY_RUN=1 outside any allocation plus extra env assignments $2...;
# its stderr+stdout go to stdout; the exit status is kept.
dry_run() {
  local script=$1
  shift
  # env -u: a test run inside a Slurm job must not see that job's allocation.
  env -u SLURM_JOB_ID -u SLURM_JOB_NODELIST -u SLURM_JOB_NUM_NODES -u SLURM_GPUS_ON_NODE \
    -u SLURM_GPUS_PER_NODE -u SLURM_SUBMIT_DIR -u SLURM_CPUS_ON_NODE -u SLURM_CPUS_PER_TASK \
    -u TP -u PP -u NODES -u GPUS_PER_NODE -u MODEL -u SLURM_CONF \
    DRY_RUN=1 "$@" bash "$SLURM_DIR/$script.sbatch" 2>&1
}

# expect_dry SCRIPT "pattern1" "pattern2" ... : DRY_RUN must exit 0 and print every pattern
# (fixed strings).
expect_dry() {
  local script=$1 out p ok=1
  shift
  if ! out=$(dry_run "$script"); then
    fail "$script DRY_RUN exited non-zero:"$'\n'"$out"
    return
  fi
  for p in "$@"; do
    if ! grep -qF -- "$p" <<<"$out"; then
      fail "$script DRY_RUN does not print '$p'. Output:"$'\n'"$out"
      ok=0
    fi
  done
  [ "$ok" = 0 ] || pass "$script DRY_RUN: $(grep -o 'tp=[0-9]* pp=[0-9]* ranks=[0-9]* ranks_per_node=[0-9]*' <<<"$out")"
}

# expect_refused SCRIPT "message" ENV... : DRY_RUN with ENV must fail and say "message".
expect_refused() {
  local script=$1 msg=$2 out
  shift 2
  if out=$(dry_run "$script" "$@"); then
    fail "$script DRY_RUN with $* should fail but exited 0:"$'\n'"$out"
  elif grep -qF -- "$msg" <<<"$out"; then
    pass "$script with $* refused: $(grep -F -- "$msg" <<<"$out" | head -1)"
  else
    fail "$script with $* failed without '$msg':"$'\n'"$out"
  fi
}

check_dry_runs() {
  expect_dry olmo-7b "tp=4 pp=1 ranks=4 ranks_per_node=4" "--ntasks=4 --ntasks-per-node=4" \
    "--gpus-per-node=4 --gpu-bind=none" "--mpi=pmix" "--tp 4 --pp 1" "olmo-coordinator" "--listen 127.0.0.1:0"
  expect_dry olmo-32b-1node "tp=8 pp=1 ranks=8 ranks_per_node=8" "--nodes=1 --ntasks=8" \
    "--gpus-per-node=8 --gpu-bind=none" "--tp 8 --pp 1"
  expect_dry olmo-32b-2node "tp=8 pp=2 ranks=16 ranks_per_node=8" "hosts=node1,node2" \
    "--nodes=2 --ntasks=16 --ntasks-per-node=8" "--distribution=block" "--gpus-per-node=8" \
    "--tp 8 --pp 2" "coordinator (on node1)"
  expect_dry olmo-cpu-demo "tp=2 pp=2 ranks=4 ranks_per_node=4" "--ntasks=4 --ntasks-per-node=4" \
    "--tp 2 --pp 2" "OMPI_MCA_mpi_yield_when_idle=1" "--kv-cache-mib 64" "DRY_RUN=1: nothing launched"
  # Parameters from the environment.
  local out
  out=$(dry_run olmo-32b-1node TP=4 PP=2 CLIENT_PORT=8000 DRAIN_SECONDS=7 MODEL=/m)
  if grep -qF "tp=4 pp=2 ranks=8" <<<"$out" && grep -qF -- "--listen 127.0.0.1:8000" <<<"$out" &&
    grep -qF -- "--drain-seconds 7" <<<"$out" && grep -qF -- "--term-grace-seconds 12" <<<"$out" &&
    grep -qF -- "--model /m" <<<"$out"; then
    pass "olmo-32b-1node with TP=4 PP=2 CLIENT_PORT=8000 DRAIN_SECONDS=7 MODEL=/m"
  else
    fail "olmo-32b-1node env parameters not applied:"$'\n'"$out"
  fi
  if dry_run olmo-cpu-demo | grep -q -- "--gpu"; then
    fail "olmo-cpu-demo must not ask for GPUs"
  fi
  expect_refused olmo-32b-2node "TP must stay inside a node" TP=16 PP=1
  expect_refused olmo-32b-1node "only 8 GPUs per node" TP=8 PP=2
  expect_refused olmo-cpu-demo "do not divide evenly" NODES=3 TP=2 PP=2
  expect_refused olmo-7b "ON_WORKER_FAILURE=bogus" ON_WORKER_FAILURE=bogus
  expect_refused olmo-7b "is not a positive integer" TP=0
}

# Starts a private slurmctld (no slurmd) with 2 fake gpu nodes and runs sbatch --test-only.
check_test_only() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "NOTE: sbatch --test-only skipped: needs root to start a private slurmctld"
    return
  fi
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    bash "$SLURM_DIR/install-slurm.sh"
  fi
  CLUSTER_DIR=$(mktemp -d /tmp/olmo-slurm-static.XXXXXX)
  export OLMO_SLURM_DIR="$CLUSTER_DIR" OLMO_SLURM_FAKE_GPU_NODES=2 OLMO_SLURM_NO_SLURMD=1
  # Ports apart from the e2e test's (6827/6828) and a default cluster's (6817/6818).
  export OLMO_SLURMCTLD_PORT="${OLMO_STATIC_CTLD_PORT:-6837}" OLMO_SLURMD_PORT="${OLMO_STATIC_SLURMD_PORT:-6838}"
  if ! bash "$SLURM_DIR/local-cluster.sh" start >/dev/null; then
    fail "cannot start the private slurmctld for sbatch --test-only"
    return
  fi
  export SLURM_CONF="$CLUSTER_DIR/slurm.conf"
  echo "fake GPU nodes: $(scontrol show node gpu1 2>&1 | grep -Eo '(CPUTot|Gres|State)=[^ ]*' | tr '\n' ' ')"
  local s out
  for s in olmo-7b olmo-32b-1node olmo-32b-2node; do
    # MODEL is only read at run time; --test-only never starts the script.
    if out=$(MODEL=/nonexistent sbatch --test-only -p gpu "$SLURM_DIR/$s.sbatch" 2>&1); then
      pass "sbatch --test-only $s: $out"
    elif grep -qi "to start at" <<<"$out"; then
      pass "sbatch --test-only $s: $out"
    else
      fail "sbatch --test-only $s refused: $out"
    fi
  done
  # An impossible request must be refused (proves --test-only checks the GPU declarations).
  if out=$(sbatch --test-only -p gpu --gpus-per-node=9 "$SLURM_DIR/olmo-32b-1node.sbatch" 2>&1); then
    fail "sbatch --test-only accepted 9 GPUs per node on 8-GPU nodes: $out"
  else
    pass "sbatch --test-only refuses 9 GPUs per node: $out"
  fi
}

check_shellcheck
check_dry_runs
check_test_only
if [ "$FAILS" -ne 0 ]; then
  echo "slurm_static: $FAILS check(s) failed" >&2
  exit 1
fi
echo SLURM_STATIC_PASSED
