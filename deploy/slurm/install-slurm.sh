#!/usr/bin/env bash
# Installs the Debian packages needed to run Olmo Serve under Slurm (and to test the scripts
# here): Slurm 22.05 (slurm-wlm: slurmctld, slurmd, client tools), munge (Slurm's auth),
# libpmix-dev (Slurm's mpi_pmix plugin dlopens the unversioned libpmix.so that only the -dev
# package ships; without it `srun --mpi=pmix` fails with "can not load PMIx library"),
# libpmix-bin, and shellcheck (the static test). Idempotent: installs only what is missing.
#   bash deploy/slurm/install-slurm.sh
set -euo pipefail

PACKAGES=(slurm-wlm munge libpmix-dev libpmix-bin shellcheck)

# Prints the packages of PACKAGES that dpkg does not report as installed.
missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

main() {
  local missing
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install-slurm: all ${#PACKAGES[@]} packages present (${PACKAGES[*]})"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-slurm: not root and no sudo" >&2; return 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "install-slurm: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq || { echo "install-slurm: apt-get update failed" >&2; return 1; }
  # --no-install-recommends: slurm-wlm would otherwise pull every plugin package (+40 MB).
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "install-slurm: apt-get install ${missing[*]} failed" >&2
    return 1
  fi
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -ne 0 ]; then
    echo "install-slurm: still missing after install: ${missing[*]}" >&2
    return 1
  fi
  echo "install-slurm: installed"
}

main "$@"
