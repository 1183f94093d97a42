#!/usr/bin/env bash
# sbatch with the cluster settings of slurm/config.sh: every job of the project is submitted
# through this (pipeline.sh and `seaice batch --slurm` too), so account, partition and GPUs are
# set in one place.
#   slurm/sbatch.sh [SBATCH OPTIONS] slurm/SCRIPT.sbatch [ARGS]   # or [SBATCH OPTIONS] --wrap "..."
# Adds --account and --partition (train.sbatch: the GPU partition, --gpus-per-node, and
# --cpus-per-task and --mem sized from the training config: `seaice train --job-resources`) and, unless
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
  # CPUs for every trainer of a task and its loader workers, and memory, from the training config
  # (its num_workers and job_mem, with the job's --set overrides); options given here still win
  trainers=$SEAICE_PROCS_PER_TASK
  [ "$SEAICE_GPUS_PER_NODE" -gt 0 ] && trainers=$SEAICE_GPUS_PER_NODE
  after=("${@:$((${#options[@]} + 2))}")  # the script's arguments: CONFIG [--set KEY=VALUE ...]
  if [ "${#after[@]}" -gt 0 ]; then
    resources=$(seaice_activate && python -m seaice_lib train --config "${after[@]}" --job-resources "$trainers") || {
      echo "sbatch.sh: cannot size the training job from ${after[0]} (the error is above)" >&2; exit 2; }
    read -r -a sized <<< "$resources"
    settings+=("${sized[@]}")
  fi
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
