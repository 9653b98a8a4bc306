#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for mlvf's Slurm integration tests (CI runs it as root).
#
#   scripts/local-slurm.sh install   # apt packages: slurmctld slurmd slurm-client munge
#   scripts/local-slurm.sh start     # starts munged, slurmctld, slurmd under $MLVF_SLURM_DIR; waits for an idle node
#   scripts/local-slurm.sh env       # prints `export SLURM_CONF=...` for the tests
#   scripts/local-slurm.sh stop      # stops the daemons and waits for them to exit
#
# No systemd, no cgroups: proctrack/linuxproc and task/none. Nothing is written to /etc/slurm; clients and daemons
# read $MLVF_SLURM_DIR/slurm.conf through SLURM_CONF. Facts behind each setting: shared/research/slurm-local.md.
set -euo pipefail

D=${MLVF_SLURM_DIR:-/tmp/mlvf-slurm}
SOCK=$D/munge/munge.socket.2
CONF=$D/slurm.conf

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    cat >"$CONF" <<CONF
ClusterName=mlvf-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=$SOCK,cred_expire=10
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

# Whether the daemon whose pid file is $1 is running.
alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start() {
    install
    mkdir -p "$D"/{munge,state,spool,log}
    chown munge:munge "$D/munge"
    chmod 0755 "$D/munge"
    write_conf
    # Daemons left by an earlier start are reused; stale sockets and pid files (a machine whose
    # processes were killed, /tmp kept) are cleared first.
    if ! alive "$D/munge/munged.pid"; then
        rm -f "$SOCK" "$SOCK.lock" "$D/munge/munged.pid"
        runuser -u munge -- /usr/sbin/munged --socket="$SOCK" --pid-file="$D/munge/munged.pid" \
            --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
    fi
    export SLURM_CONF=$CONF
    alive "$D/slurmctld.pid" || /usr/sbin/slurmctld -i -f "$CONF"
    alive "$D/slurmd.pid" || /usr/sbin/slurmd -N localhost -f "$CONF"
    for _ in $(seq 1 100); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
            echo "slurm: one idle node (SLURM_CONF=$CONF)"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm: the node did not become idle; logs in $D/log" >&2
    tail -n 20 "$D"/log/*.log >&2 || true
    return 1
}

stop_pid() {
    local f=$1
    [ -f "$f" ] || return 0
    local pid
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    stop_pid "$D/slurmd.pid"
    stop_pid "$D/slurmctld.pid"
    stop_pid "$D/munge/munged.pid"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
