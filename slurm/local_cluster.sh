#!/usr/bin/env bash
# A single-node SLURM on this machine, for trying the job scripts and for the tests:
#   slurm/local_cluster.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, squeue, scontrol, scancel talk to it
#   slurm/local_cluster.sh stop DIR
# Needs root and the Debian packages slurm-wlm and munge (`make slurm-deps`). Settings that make
# SLURM work in a container without cgroups: processes tracked through /proc
# (proctrack/linuxproc), no task plugin, the node named localhost, memory per CPU by default.
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?state folder}")
conf=$dir/slurm.conf

stop() {  # munged only where this script started it (its pid recorded in DIR): a munged of the machine stays
  for daemon in slurmd slurmctld munged; do
    if [ -f "$dir/$daemon.pid" ]; then
      kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
      rm -f "$dir/$daemon.pid"
    fi
  done
}

case "$action" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "local_cluster.sh: unknown action '$action' (start or stop)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "local_cluster.sh: needs root (munged, slurmd)" >&2; exit 2; }
for cmd in munged slurmctld slurmd; do
  command -v "$cmd" >/dev/null || { echo "local_cluster.sh: $cmd not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
done
mkdir -p "$dir/state" "$dir/spool"
cpus=$(( $(nproc) * 2 ))  # oversubscribed: short CPU jobs of a pipeline run side by side
memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 3 / 4 ))
cat > "$conf" <<CONF
ClusterName=seaice-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=${SEAICE_SLURMCTLD_PORT:-6817}
SlurmdPort=${SEAICE_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=$(( memory / cpus ))
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
KillWait=30
NodeName=localhost CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes=localhost MaxTime=INFINITE State=UP
CONF
# munged runs as the munge user with its socket folder in /run/munge
mkdir -p /run/munge && chown munge:munge /run/munge
stop
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged  # it forks, then writes its own pid file
  if [ -f /run/munge/munged.pid ]; then cp /run/munge/munged.pid "$dir/munged.pid"; fi
fi
slurmctld -f "$conf" -i
slurmd -f "$conf" -N localhost
export SLURM_CONF=$conf
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "SLURM is up: export SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.5
done
echo "local_cluster.sh: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
exit 1
