#!/usr/bin/env bash
# Runs an Olmo Serve program as a local tp x pp worker group under Open MPI.
#   bash deploy/local/mpirun.sh NP PROGRAM [ARGS...]
#   bash deploy/local/mpirun.sh 4 build/tools/olmo-generate/olmo-generate --tp 2 --pp 2 \
#       --model demo-model --prompt-ids 1,2,3
# Flags and why:
#   --allow-run-as-root  Open MPI refuses root without it (and then exits 0 having run nothing)
#   --oversubscribe      more ranks than cores (2 cores here) is fine for CPU ranks
#   --bind-to none       ranks share cores; binding would pin several ranks to one core
#   OMPI_MCA_mpi_yield_when_idle=1  waiting ranks yield the core instead of busy-polling, which
#                        otherwise makes oversubscribed collectives orders of magnitude slower
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NP PROGRAM [ARGS...]" >&2
  exit 2
fi
NP=$1
shift
export OMPI_MCA_mpi_yield_when_idle=1
exec mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$NP" "$@"
