#!/usr/bin/env bash
# Installs every Debian package the project needs to build, test and run. Idempotent.
set -euo pipefail
PACKAGES=(
  cmake g++ make pkg-config clang
  libabsl-dev libspdlog-dev nlohmann-json3-dev libpcre2-dev libopenblas-dev libgtest-dev
  libbenchmark-dev libssl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libopenmpi-dev openmpi-bin
  # Slurm deployment and its tests (deploy/slurm/install-slurm.sh explains each).
  slurm-wlm munge libpmix-dev libpmix-bin shellcheck jq
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
