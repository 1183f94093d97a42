#!/usr/bin/env bash
# The whole pipeline as a chain of SLURM jobs, each starting only after the ones it needs ended
# well (afterok; the rest of the chain is cancelled when one fails):
#   data (download, or --synthetic scenes) -> prepare -> patches (array, one scene per task)
#   -> consolidate -> train (one job per model) -> evaluate -> explain -> figures
#
#   slurm/pipeline.sh submit NAME [options]   # prints the job ids; writes runs/NAME/jobs.tsv
#   slurm/pipeline.sh status NAME             # every job's state; a failed one with its log
#   slurm/pipeline.sh wait NAME               # status once no job is pending or running
#
# Submit options (defaults in brackets):
#   --synthetic "REGIONS PER_REGION SIZE"  generated scenes instead of a download (the demo)
#   --article ARTICLE     portal article to download [raw-train]; --api-url URL for another portal
#   --max-scenes N        array size when the scene count is not known before download [512]
#   --models "M ..."      models to train [unet tsvit_v1 tsvit_v2 tsvit_v3]
#   --config YAML         training config the models start from [configs/demo.yaml]
#   --set KEY=VALUE       training config override (repeatable, each KEY once), e.g. --set steps=150;
#                         not store, out_dir, model or scenes_dir, which the pipeline sets
#   --patch-args "..."    seaice patches settings [--patch 32 --downsample 4]
# Account, partition, GPUs and paths: slurm/config.sh (applied by slurm/sbatch.sh). Submit from the
# repository root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SEAICE_CONFIG=${SEAICE_CONFIG:-$here/config.sh}
source "$SEAICE_CONFIG"

usage() { echo "pipeline.sh: $1 (usage: pipeline.sh submit|status|wait NAME [options])" >&2; exit 2; }
action=${1:-}
name=${2:-}
[ -n "$action" ] && [ -n "$name" ] || usage "an action and a run name are needed"
shift 2
run=$(realpath -m "$SEAICE_RUNS/$name")
jobs=$run/jobs.tsv

# "stage job_id" lines of jobs.tsv -> one line per job (array tasks each) "stage id state exit log".
# slurmctld forgets finished jobs after MinJobAge; then sacct answers (with accounting), else UNKNOWN.
job_lines() {
  local stage id shown
  while IFS=$'\t' read -r stage id _; do
    shown=$(scontrol show job -o "$id" 2>/dev/null) || shown=""
    if [ -n "$shown" ]; then
      while read -r line; do
        local state exit log task
        state=$(grep -o 'JobState=[^ ]*' <<<"$line" | cut -d= -f2)
        exit=$(grep -o ' ExitCode=[^ ]*' <<<"$line" | cut -d= -f2)
        log=$(grep -o 'StdOut=[^ ]*' <<<"$line" | cut -d= -f2)
        task=$(grep -o 'ArrayTaskId=[^ ]*' <<<"$line" | cut -d= -f2)
        printf '%s\t%s\t%s\t%s\t%s\n' "$stage" "$id${task:+_$task}" "$state" "$exit" "$log"
      done <<<"$shown"
    elif shown=$(sacct -n -X -P -j "$id" -o JobID,State,ExitCode 2>/dev/null) && [ -n "$shown" ]; then
      while IFS='|' read -r job state exit; do
        printf '%s\t%s\t%s\t%s\t%s\n' "$stage" "$job" "${state%% *}" "$exit" "$run/logs/"
      done <<<"$shown"
    else
      printf '%s\t%s\tUNKNOWN\t-\t%s\n' "$stage" "$id" "neither scontrol nor sacct knows the job"
    fi
  done <"$jobs"
}

status() {
  [ -f "$jobs" ] || usage "no pipeline submitted as $name ($jobs missing)"
  local lines failed=0 running=0 unknown=0
  lines=$(job_lines)
  printf '%-16s %-10s %-12s %-6s %s\n' stage job state exit log
  while IFS=$'\t' read -r stage id state exit log; do
    printf '%-16s %-10s %-12s %-6s %s\n' "$stage" "$id" "$state" "$exit" "$log"
  done <<<"$lines"
  while IFS=$'\t' read -r stage id state exit log; do
    case "$state" in
      COMPLETED) ;;
      PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|SUSPENDED) running=1 ;;
      CANCELLED) ;;
      UNKNOWN) unknown=1; echo "UNKNOWN: stage $stage, job $id: $log (look in $run/logs/)" ;;
      *) failed=1; echo "FAILED: stage $stage, job $id ($state, exit $exit); its log: $log" ;;
    esac
  done <<<"$lines"
  [ "$unknown" = 1 ] && [ "$failed" = 0 ] && return 1
  if [ "$failed" = 1 ]; then
    echo "the stages after it were cancelled (afterok); fix the cause and submit again" ; return 1
  fi
  [ "$running" = 1 ] && return 3
  if grep -q $'\tCANCELLED\t' <<<"$lines"; then echo "cancelled jobs: the pipeline did not finish"; return 1; fi
  echo "pipeline $name: every job COMPLETED; outputs under $run"
}

case "$action" in
  status) status; exit $? ;;
  wait)
    [ -f "$jobs" ] || usage "no pipeline submitted as $name ($jobs missing)"
    while job_lines | cut -f3 | grep -Eq '^(PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|SUSPENDED)$'; do
      sleep "${SEAICE_POLL_S:-10}"
    done
    status; exit $? ;;
  submit) ;;
  *) usage "unknown action '$action'" ;;
esac

synthetic="" article=raw-train api_url="" max_scenes=512 models="unet tsvit_v1 tsvit_v2 tsvit_v3"
config=configs/demo.yaml patch_args="--patch 32 --downsample 4" sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --synthetic) synthetic=${2:?}; shift 2 ;;
    --article) article=${2:?}; shift 2 ;;
    --api-url) api_url=${2:?}; shift 2 ;;
    --max-scenes) max_scenes=${2:?}; shift 2 ;;
    --models) models=${2:?}; shift 2 ;;
    --config) config=${2:?}; shift 2 ;;
    --set)
      case "${2:?}" in
        store=*|out_dir=*|model=*|scenes_dir=*) usage "--set ${2%%=*}: the pipeline sets store, out_dir, model and scenes_dir itself (models: --models)" ;;
      esac
      sets+=(--set "$2"); shift 2 ;;
    --patch-args) patch_args=${2:?}; shift 2 ;;
    *) usage "unknown option '$1'" ;;
  esac
done
[ -f "$config" ] || usage "--config $config: no such file"
[ -e "$jobs" ] && usage "$run already holds a pipeline ($jobs); choose another name"
mkdir -p "$run/logs"
config=$(realpath "$config")
raw=$run/raw scenes=$run/scenes store=$run/patches.zarr

submitted=()  # job ids in order
submit() {  # submit STAGE DEPENDENCY SBATCH_ARGS... -> prints the job id, records it
  local stage=$1 after=$2 id
  shift 2
  local dep=()
  [ -n "$after" ] && dep=(--dependency="afterok:$after" --kill-on-invalid-dep=yes)
  id=$("$here/sbatch.sh" --parsable --job-name="seaice-$name-$stage" "${dep[@]}" "$@") ||
    { echo "pipeline.sh: sbatch refused stage $stage; the stages before it stay submitted" >&2; exit 1; }
  id=${id%%;*}
  printf '%s\t%s\n' "$stage" "$id" >>"$jobs"
  echo "$id"
}
wrap() {  # a command run in the environment
  printf 'set -eu; . %q; seaice_activate; %s' "$SEAICE_CONFIG" "$1"
}
log() { echo "--output=$run/logs/$1"; }

if [ -n "$synthetic" ]; then
  read -r regions per_region size <<<"$synthetic"
  [[ "$regions$per_region$size" =~ ^[0-9]+$ ]] && [ $(( regions * per_region )) -gt 0 ] ||
    usage "--synthetic needs three positive whole numbers: \"REGIONS PER_REGION SIZE\", not \"$synthetic\""
  n_scenes=$(( regions * per_region ))
  data=$(submit data "" "$(log data-%j.out)" --wrap "$(wrap "seaice synthetic --out $run/synthetic --regions $regions \
    --scenes-per-region $per_region --size $size $size --raw --quiet && ln -sfn $run/synthetic/raw $raw")")
else
  n_scenes=$max_scenes
  data=$(submit data "" "$(log data-%j.out)" --wrap "$(wrap "seaice download --article $article --dest $raw --quiet \
    ${api_url:+--api-url $api_url}")")
fi
prepare=$(submit prepare "$data" "$(log prepare-%j.out)" --wrap "$(wrap "seaice prepare --raw $raw --out $scenes")")
export PATCH_ARGS=$patch_args  # sbatch passes the environment on to the jobs
patches=$(submit patches "$prepare" "$(log patches-%A_%a.out)" --array="0-$((n_scenes - 1))%64" \
  "$here/patches.sbatch" "$scenes" "$store")
consolidate=$(submit consolidate "$patches" "$(log consolidate-%j.out)" "$here/patches.sbatch" "$scenes" "$store" consolidate)
progress=(--set progress=false)  # unless --set says otherwise: an option is given once
for set in "${sets[@]}"; do [[ $set == progress=* ]] && progress=(); done
trained=()
for model in $models; do
  trained+=("$(submit "train-$model" "$consolidate" "$(log "train-$model-%j.out")" \
    --nodes="$SEAICE_TRAIN_NODES" --ntasks-per-node=1 --time="$SEAICE_TIME_TRAIN" \
    "$here/train.sbatch" "$config" --set store="$store" --set out_dir="$run/train/$model" --set model="$model" \
    --set scenes_dir="$scenes" "${progress[@]}" "${sets[@]}")")
done
after_train=$(IFS=:; echo "${trained[*]}")
nb() { echo "$here/notebook.sbatch"; }
evaluate=$(submit evaluate "$after_train" "$(log evaluate-%j.out)" "$(nb)" notebooks/05_evaluate.ipynb "$name/notebooks/evaluate" \
  -p runs_dir "$run/train" -p scenes_dir "$scenes" -p out_dir "$run/evaluate")
explained=() explain_dirs=()
for model in $models; do
  explained+=("$(submit "explain-$model" "$after_train" "$(log "explain-$model-%j.out")" "$(nb)" notebooks/06_explain.ipynb \
    "$name/notebooks/explain-$model" -p run_dir "$run/train/$model" -p scenes_dir "$scenes" -p out_dir "$run/explain/$model")")
  explain_dirs+=("$run/explain/$model")
done
after_explain=$(IFS=:; echo "${explained[*]}")
bench=(); [ -d "$SEAICE_RUNS/bench" ] && bench=(-p bench_dir "$(realpath "$SEAICE_RUNS/bench")")  # where benchmarks ran
figures=$(submit figures "$evaluate:$after_explain" "$(log figures-%j.out)" "$(nb)" notebooks/07_paper_figures.ipynb \
  "$name/notebooks/figures" -p runs_dir "$run/train" -p scenes_dir "$scenes" -p explain_dirs "$(IFS=,; echo "${explain_dirs[*]}")" \
  "${bench[@]}" -p out_dir "$run/figures")
echo "submitted pipeline $name: $(cut -f2 "$jobs" | paste -sd' ') (jobs.tsv, logs/ under $run)"
