#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the profile and launcher tests.
#
#   scripts/slurm-cluster.sh start    # idempotent; the cluster is up in about a second
#   scripts/slurm-cluster.sh status   # exit 0 when the controller answers and the node is usable
#   scripts/slurm-cluster.sh stop     # stops only the daemons this script started (pid files)
#   scripts/slurm-cluster.sh env      # print the settings it would use
#
# Needs the Debian packages slurmctld slurmd slurm-client munge (scripts/install-system-deps.sh)
# and root (or password-less sudo): slurmd runs jobs as their users and the client commands read
# /etc/slurm/slurm.conf, so that path must be the configuration (a symlink to ours).
# Choices measured on Debian bookworm / SLURM 22.05 (../shared/HPC-NOTES.md): no systemd, munged
# with --force on its own socket, linuxproc process tracking, no task plugin, cons_tres with
# core+memory, a fake GPU (gres.conf File=/dev/null) so `--gpus=1` and `--gres=gpu:1` are
# accepted, MinJobAge=3600 so `squeue --states=all` still answers for finished jobs (the
# snakemake SLURM plugin uses squeue when there is no accounting database), and a job completion
# log (jobcomp/filetxt) that records every job's partition.
# Partitions: `cpu` (default) and `gpu`, both on the one node.
set -euo pipefail

# BRAGGFLOW_TESTCLUSTER_* size the test node; they are not the profile's BRAGGFLOW_SLURM_*
# settings (those size jobs: a node sized by them could never run a 2-task allocation).
DIR=${BRAGGFLOW_TESTCLUSTER_DIR:-/var/tmp/braggflow-slurm}
ETC=${BRAGGFLOW_TESTCLUSTER_ETC:-/etc/slurm}
NODE=$(hostname -s)
CPUS=${BRAGGFLOW_TESTCLUSTER_CPUS:-$(nproc)}
MEM_MB=${BRAGGFLOW_TESTCLUSTER_MEM_MB:-$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"

die() {
  echo "slurm-cluster: $*" >&2
  exit 1
}

need_packages() {
  local missing=()
  for cmd in slurmctld slurmd munged sbatch squeue scontrol; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm-cluster: missing ${missing[*]}; install slurmctld slurmd slurm-client munge" \
      "(scripts/install-system-deps.sh)" >&2
    exit 2
  fi
  if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    echo "slurm-cluster: needs root or password-less sudo (slurmd, /etc/slurm)" >&2
    exit 2
  fi
}

alive() { # alive PIDFILE
  [ -s "$1" ] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null
}

write_config() {
  $SUDO mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
  $SUDO chmod 700 "$DIR/munge"
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by braggflow scripts/slurm-cluster.sh: a single-node test cluster. Do not edit.
ClusterName=braggflow
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${DIR}/munge/munge.socket
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/slurmctld.log
SlurmdLogFile=${DIR}/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=3600
KillWait=5
InactiveLimit=0
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/jobcomp.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${NODE} MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$tmp" "$DIR/slurm.conf"; then
    CONFIG_CHANGED=1
    $SUDO install -m 644 "$tmp" "$DIR/slurm.conf"
  fi
  printf 'Name=gpu File=/dev/null Count=1\n' >"$tmp"
  $SUDO install -m 644 "$tmp" "$DIR/gres.conf"
  rm -f "$tmp"
  $SUDO mkdir -p "$ETC"
  for f in slurm.conf gres.conf; do
    if [ -e "$ETC/$f" ] && [ "$(readlink "$ETC/$f" || true)" != "$DIR/$f" ]; then
      die "$ETC/$f exists and is not ours (a real SLURM installation?); refusing to replace it"
    fi
    $SUDO ln -sfn "$DIR/$f" "$ETC/$f"
  done
}

start_munge() {
  alive "$DIR/munge/munged.pid" && return 0
  if [ ! -s "$DIR/munge/munge.key" ]; then
    $SUDO dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    $SUDO chmod 600 "$DIR/munge/munge.key"
  fi
  $SUDO munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
}

node_ready() {
  local state
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1) || return 1
  case "$state" in
    idle* | mixed* | allocated* | completing*) return 0 ;;
    *) return 1 ;;
  esac
}

CONFIG_CHANGED=0

start() {
  need_packages
  write_config
  if [ "$CONFIG_CHANGED" = 1 ] && { alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; }; then
    echo "slurm-cluster: node settings changed; restarting the daemons" >&2
    stop_daemons
  fi
  start_munge
  # -c: a fresh controller forgets the jobs of an earlier life of this test cluster (a job left
  # pending there would otherwise hold the node)
  alive "$DIR/slurmctld.pid" || $SUDO slurmctld -c
  alive "$DIR/slurmd.pid" || $SUDO slurmd
  local i state
  for i in $(seq 1 100); do
    if node_ready; then
      echo "slurm-cluster: up (node $NODE, $CPUS CPUs, ${MEM_MB} MB, partitions cpu gpu; $DIR)"
      return 0
    fi
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
      down* | drain* | inval* | fail*)
        $SUDO scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        ;;
    esac
    sleep 0.2
  done
  echo "slurm-cluster: node did not become ready; logs in $DIR" >&2
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  return 1
}

kill_pidfiles() { # kill_pidfiles PIDFILE...
  local f pid
  for f in "$@"; do
    if alive "$f"; then
      pid=$(cat "$f")
      $SUDO kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        $SUDO kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
  done
}

stop_daemons() { kill_pidfiles "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; }

stop() {
  kill_pidfiles "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"
  echo "slurm-cluster: stopped"
}

status() {
  alive "$DIR/munge/munged.pid" || { echo "slurm-cluster: munged not running"; return 1; }
  alive "$DIR/slurmctld.pid" || { echo "slurm-cluster: slurmctld not running"; return 1; }
  alive "$DIR/slurmd.pid" || { echo "slurm-cluster: slurmd not running"; return 1; }
  node_ready || { echo "slurm-cluster: node $NODE not ready"; return 1; }
  sinfo -o "%P %a %D %T %c %m %G"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "DIR=$DIR ETC=$ETC NODE=$NODE CPUS=$CPUS MEM_MB=$MEM_MB" ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
