#!/usr/bin/env bash
# sbatch with the cluster settings of slurm/config.sh: every job of the project is submitted
# through this (pipeline.sh and `seaice batch --slurm` too), so account, partition and GPUs are
# set in one place.
#   slurm/sbatch.sh [SBATCH OPTIONS] slurm/SCRIPT.sbatch [ARGS]   # or [SBATCH OPTIONS] --wrap "..."
# Adds --account and --partition (train.sbatch: the GPU partition and --gpus-per-node) and, unless
# an --output is given, writes the job log to $SEAICE_RUNS/slurm/NAME-JOBID.out (the folder is
# created: Slurm fails a job whose log folder is missing). Options given here come after the
# settings and win. Give sbatch options in their --name=value form.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SEAICE_CONFIG=${SEAICE_CONFIG:-$here/config.sh}
source "$SEAICE_CONFIG"

options=() script=""
for arg in "$@"; do  # the job script is the first argument that is not an option (none with --wrap)
  case "$arg" in
    --wrap|--wrap=*) break ;;
    -*) options+=("$arg") ;;
    *) script=$arg; break ;;
  esac
done
settings=()
[ -n "$SEAICE_ACCOUNT" ] && settings+=(--account="$SEAICE_ACCOUNT")
partition=$SEAICE_PARTITION
if [ "$(basename "$script")" = train.sbatch ]; then
  partition=$SEAICE_GPU_PARTITION
  [ "$SEAICE_GPUS_PER_NODE" -gt 0 ] && settings+=(--gpus-per-node="$SEAICE_GPUS_PER_NODE")
fi
[ -n "$partition" ] && settings+=(--partition="$partition")
if ! printf '%s\n' "${options[@]}" | grep -Eq '^(--output|-o)'; then
  mkdir -p "$SEAICE_RUNS/slurm"
  case " ${options[*]} " in
    *" --array="*) settings+=(--output="$SEAICE_RUNS/slurm/%x-%A_%a.out") ;;
    *) settings+=(--output="$SEAICE_RUNS/slurm/%x-%j.out") ;;
  esac
fi
exec sbatch "${settings[@]}" "$@"
