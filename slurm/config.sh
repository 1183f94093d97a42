# Cluster settings in one place, sourced by sbatch.sh (which every submission goes through), pipeline.sh
# and every job script (POSIX sh). Override any of them in the environment (export SEAICE_PARTITION=gpu)
# or edit the defaults here.
: "${SEAICE_ACCOUNT:=}"            # sbatch --account; empty: the user's default account
: "${SEAICE_PARTITION:=}"          # partition of CPU jobs; empty: the cluster's default
: "${SEAICE_GPU_PARTITION:=$SEAICE_PARTITION}"  # partition of training jobs
: "${SEAICE_GPUS_PER_NODE:=0}"     # GPUs per training node; 0 trains on CPUs (gloo)
: "${SEAICE_PROCS_PER_TASK:=1}"    # trainers per srun task when SEAICE_GPUS_PER_NODE is 0
: "${SEAICE_TRAIN_NODES:=1}"       # srun tasks (one torchrun each) of a training job
: "${SEAICE_ENV:=.venv/bin/activate}"  # script that activates the environment on a compute node
: "${SEAICE_RUNS:=runs}"           # where every job writes (runs/<name>/...)
: "${SEAICE_TIME_TRAIN:=24:00:00}" # time limit of a training job (USR1 120 s before it)

# the environment on a compute node (POSIX sh: --wrap jobs run under /bin/sh)
seaice_activate() {
  # shellcheck disable=SC1090
  . "$SEAICE_ENV"
}
