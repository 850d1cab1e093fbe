#!/usr/bin/env bash
# A real, single-node SLURM (with accounting) on this machine, for tests and small sweeps.
#
#   bash scripts/slurm_local.sh up       # install (once), configure, start, wait until the node is up
#   bash scripts/slurm_local.sh status   # which daemons run, the node and the queue
#   bash scripts/slurm_local.sh down     # stop every daemon this script started (by pid file)
#
# Needs root (apt-get, daemons run as root / munge / mysql). Daemons are started by hand because package
# installs here may not start services (policy-rc.d) and PID 1 is not systemd. Every daemon is stopped by
# the pid in its pid file, never by process name. Facts behind the choices: docs/cluster.md and
# shared/notes/slurm.md.
#
# Environment:
#   SLURM_LOCAL_DIR      state, spool, logs, pid files, database (default /var/tmp/benchmarks-slurm)
#   SLURM_LOCAL_CLUSTER  cluster name (default benchlocal); SLURM_LOCAL_PARTITION (default local)
#   SLURM_LOCAL_DB_PORT  MariaDB port (default 3307, so a system MariaDB on 3306 is left alone)
#   SLURM_LOCAL_TIMEOUT  seconds to wait for each daemon / the node (default 60)
set -euo pipefail

STATE=${SLURM_LOCAL_DIR:-/var/tmp/benchmarks-slurm}
CLUSTER=${SLURM_LOCAL_CLUSTER:-benchlocal}
PARTITION=${SLURM_LOCAL_PARTITION:-local}
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
CONF_DIR=/etc/slurm
MARKER="# written by scripts/slurm_local.sh (benchmarks): safe to overwrite"
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
RUN=$STATE/run
LOG=$STATE/log
DB_DIR=$STATE/mysql
NODE=$(hostname -s)

T0=$(date +%s.%N)
say() { echo "[slurm_local] $*"; }
die() { echo "[slurm_local] ERROR: $*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# pid_alive PIDFILE COMM: the pid in PIDFILE is alive and really is COMM (pids get reused).
pid_alive() {
    local file=$1 comm=$2 pid
    pid=$( { tr -dc '0-9' <"$file"; } 2>/dev/null ) || return 1
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm") == "$comm" ]]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds or time runs out.
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            die "timed out after ${limit}s waiting for $what (logs: $LOG)"
        fi
        sleep 0.2
    done
}

# stop_pid PIDFILE COMM: SIGTERM, wait up to 20 s, then SIGKILL; only the pid named in the file.
stop_pid() {
    local file=$1 comm=$2 pid i
    if ! pid_alive "$file" "$comm"; then
        say "$comm: not running"
        rm -f "$file"
        return 0
    fi
    pid=$( { tr -dc '0-9' <"$file"; } 2>/dev/null ) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$file" "$comm" || break
        sleep 0.2
    done
    if pid_alive "$file" "$comm"; then
        say "$comm (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    say "$comm: stopped (pid $pid)"
}

need_root() { [[ $(id -u) == 0 ]] || die "run as root (installs packages, starts daemons as munge/mysql/root)"; }

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mungekey mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    if (( ${#missing[@]} == 0 )); then
        return 0
    fi
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        apt-get update -qq
    fi
    if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1; then
        # stale package lists are the usual cause: refresh once and retry
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1 \
            || die "apt-get install ${PACKAGES[*]} failed; see $LOG/apt.log"
    fi
    say "installed in $(elapsed)s"
}

start_munge() {
    if pid_alive "$RUN/munged.pid" munged; then return 0; fi
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    # munged's own pid file lives in /run/munge; copy its pid into ours once it is written
    runuser -u munge -- munged --force
    wait_for "$TIMEOUT" munged test -s /run/munge/munged.pid
    cp /run/munge/munged.pid "$RUN/munged.pid"
    wait_for "$TIMEOUT" "munge to answer" bash -c 'munge -n | unmunge'
}

db_client() { mariadb --no-defaults --socket="$DB_DIR/mysqld.sock" -u root "$@"; }

start_mariadb() {
    mkdir -p "$DB_DIR"
    chown mysql:mysql "$DB_DIR"
    if [[ ! -d $DB_DIR/data/mysql ]]; then
        say "initialising MariaDB in $DB_DIR/data"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR/data" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $LOG/mariadb-install.log"
    fi
    if ! pid_alive "$DB_DIR/mariadbd.pid" mariadbd; then
        # small buffers: the accounting database of one node is tiny
        setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" \
            --socket="$DB_DIR/mysqld.sock" --pid-file="$DB_DIR/mariadbd.pid" \
            --log-error="$DB_DIR/mariadbd.err" --bind-address=127.0.0.1 --port="$DB_PORT" \
            --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --innodb-lock-wait-timeout=900 \
            </dev/null >/dev/null 2>&1 &
        wait_for "$TIMEOUT" "MariaDB on port $DB_PORT" db_client -e "SELECT 1"
    fi
    if [[ ! -s $STATE/dbpass ]]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/dbpass")
    fi
    local pass
    pass=$(cat "$STATE/dbpass")
    db_client <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

# write_if_changed FILE MODE: stdin -> FILE, only when the content differs; returns 0 when it changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

check_not_foreign() {
    local file=$1
    if [[ -f $file ]] && ! grep -qF "$MARKER" "$file"; then
        die "$file exists and was not written by this script; refusing to overwrite a real cluster's config"
    fi
}

write_configs() {
    mkdir -p "$CONF_DIR"
    check_not_foreign "$CONF_DIR/slurm.conf"
    check_not_foreign "$CONF_DIR/slurmdbd.conf"
    local node_line
    # the node's real CPUs/RealMemory: advertising more makes slurmd mark the node invalid
    node_line=$(slurmd -C | grep '^NodeName=' | sed 's/ UpTime=.*//')
    [[ $node_line == "NodeName=$NODE "* ]] || die "slurmd -C printed '$node_line', expected NodeName=$NODE"
    SLURMDBD_CHANGED=0
    if write_if_changed "$CONF_DIR/slurmdbd.conf" 0600 <<EOF; then SLURMDBD_CHANGED=1; fi
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/dbpass")
StorageLoc=slurm_acct_db
EOF
    SLURM_CHANGED=0
    if write_if_changed "$CONF_DIR/slurm.conf" 0644 <<EOF; then SLURM_CHANGED=1; fi
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after 2 x cred_expire seconds (default 120 -> 240 s wait)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MailProg=/bin/true
KillWait=5
InactiveLimit=0
MinJobAge=300
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/none
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurmdbd() {
    if (( SLURMDBD_CHANGED )) && pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
        say "slurmdbd.conf changed: restarting slurmdbd"
        stop_pid "$RUN/slurmdbd.pid" slurmdbd
    fi
    if ! pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
        slurmdbd
        wait_for "$TIMEOUT" slurmdbd sacctmgr -n list cluster
    fi
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=Cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

node_ready() {
    local state
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null) || return 1
    case $state in
        idle | mixed | allocated | completing) return 0 ;;
        down* | drain* | fail* | inval*)
            scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            return 1 ;;
        *) return 1 ;;
    esac
}

start_slurm() {
    if (( SLURM_CHANGED )); then
        if pid_alive "$RUN/slurmd.pid" slurmd || pid_alive "$RUN/slurmctld.pid" slurmctld; then
            say "slurm.conf changed: restarting slurmctld and slurmd"
            stop_pid "$RUN/slurmd.pid" slurmd
            stop_pid "$RUN/slurmctld.pid" slurmctld
        fi
    fi
    if ! pid_alive "$RUN/slurmctld.pid" slurmctld; then
        slurmctld
        wait_for "$TIMEOUT" slurmctld scontrol ping
    fi
    if ! pid_alive "$RUN/slurmd.pid" slurmd; then
        slurmd
    fi
    wait_for "$TIMEOUT" "node $NODE to come up" node_ready
}

cmd_up() {
    need_root
    mkdir -p "$STATE" "$RUN" "$LOG" "$STATE/state" "$STATE/spool"
    install_packages
    start_munge
    start_mariadb
    write_configs
    start_slurmdbd
    start_slurm
    say "up in $(elapsed)s: cluster $CLUSTER, partition $PARTITION, node $NODE" \
        "($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB, %T'))"
}

cmd_down() {
    need_root
    stop_pid "$RUN/slurmd.pid" slurmd
    stop_pid "$RUN/slurmctld.pid" slurmctld
    stop_pid "$RUN/slurmdbd.pid" slurmdbd
    stop_pid "$DB_DIR/mariadbd.pid" mariadbd
    stop_pid "$RUN/munged.pid" munged
    say "down in $(elapsed)s"
}

cmd_status() {
    local rc=0
    for entry in "munged:$RUN/munged.pid" "mariadbd:$DB_DIR/mariadbd.pid" "slurmdbd:$RUN/slurmdbd.pid" \
                 "slurmctld:$RUN/slurmctld.pid" "slurmd:$RUN/slurmd.pid"; do
        local comm=${entry%%:*} file=${entry#*:}
        if pid_alive "$file" "$comm"; then
            printf '%-10s running (pid %s)\n' "$comm" "$(tr -dc '0-9' <"$file")"
        else
            printf '%-10s stopped\n' "$comm"
            rc=1
        fi
    done
    if (( rc == 0 )); then
        sinfo
        squeue
    fi
    return $rc
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
