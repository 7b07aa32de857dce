#!/usr/bin/env bash
# CI: a one-node SLURM cluster on 127.0.0.1 from Debian's packages, a slice of the mini DAG through
# workflow/profiles/slurm, then the daemons stopped by PID. Run as root with the project's venv active
# (snakemake-executor-plugin-slurm installed). No systemd: munged, slurmctld and slurmd are started by
# hand. The slurm.conf lives in a temporary folder and is linked to /etc/slurm/slurm.conf for the run
# (job steps look for it there), then unlinked; an existing /etc/slurm/slurm.conf stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=$(mktemp -d /tmp/descbench-slurm.XXXXXX)
SLURM_CONF_FILE="$WORK/slurm.conf"
if [ -e /etc/slurm/slurm.conf ]; then
    echo "/etc/slurm/slurm.conf exists: this script brings up its own one-node cluster; run it on a" \
         "machine without a SLURM configuration" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

PIDS=()
stop_daemons() {
    # stop what this script started, by PID, newest first; remove the configuration link
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$SLURM_CONF_FILE" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
}
trap stop_daemons EXIT

# munge: the key is made by the package's postinst; make one if it is missing.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
runuser -u munge -- /usr/sbin/munged --pid-file "/run/munge/munged.pid"
for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
PIDS+=("$(cat /run/munge/munged.pid)")

CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p "$WORK/state" "$WORK/spool"
cat > "$SLURM_CONF_FILE" <<EOF
ClusterName=descbench-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p /etc/slurm
ln -s "$SLURM_CONF_FILE" /etc/slurm/slurm.conf

slurmctld
for _ in $(seq 100); do [ -s "$WORK/slurmctld.pid" ] && break; sleep 0.1; done
PIDS+=("$(cat "$WORK/slurmctld.pid")")
slurmd -N localhost
for _ in $(seq 100); do [ -s "$WORK/slurmd.pid" ] && break; sleep 0.1; done
PIDS+=("$(cat "$WORK/slurmd.pid")")
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null || true)
    [ "$state" = "idle" ] && break
    sleep 1
done
echo "SLURM node state: $(sinfo -h -N -o %T)"

# The repository's slurm profile, with this cluster's partition, no account and no GPU GRES.
mkdir -p "$WORK/profile"
python - "$REPO/workflow/profiles/slurm/config.yaml" "$WORK/profile/config.yaml" <<'EOF'
import sys

import yaml

profile = yaml.safe_load(open(sys.argv[1]))
profile["jobs"] = 2
profile["slurm-no-account"] = True
profile["slurm-init-seconds-before-status-checks"] = 5
profile["default-resources"] = {"slurm_partition": "debug", "runtime": 30, "mem_mb": 1500}
train = profile["set-resources"]["train"]
train.pop("gres")
train.update(slurm_partition="debug", runtime=30, mem_mb=3000)
yaml.safe_dump(profile, open(sys.argv[2], "w"))
EOF

# The slice: generate and prepare the mini data, train one model (the GPU rule, here on CPU) and
# evaluate it and a handcrafted descriptor.
mkdir -p "$WORK/run"
TARGETS=(
    results/mini/scores/ubc/mini_liberty/hardnet/seed0/mini_notredame/summary.json
    results/mini/scores/ubc/handcrafted/raw/mini_yosemite/summary.json
)
start=$(date +%s)
snakemake -s "$REPO/Snakefile" --directory "$WORK/run" --configfile "$REPO/config/mini.yaml" \
    --profile "$WORK/profile" "${TARGETS[@]}" 2>&1 | tee "$WORK/snakemake.log"
echo "SLURM slice finished in $(( $(date +%s) - start )) s"
for target in "${TARGETS[@]}"; do
    python -c "import json, sys; s = json.load(open(sys.argv[1])); assert 0 <= s['fpr95'] <= 1, s" \
        "$WORK/run/$target"
done
submitted=$(grep -c "has been submitted with SLURM jobid" "$WORK/snakemake.log" || true)
if [ "$submitted" -lt 5 ]; then
    echo "expected the slice's jobs to go through sbatch, saw $submitted submissions" >&2
    exit 1
fi
echo "SLURM slice OK: ${#TARGETS[@]} targets valid; $submitted jobs ran through sbatch"
