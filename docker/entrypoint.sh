#!/bin/sh
# The image's entrypoint.
#
# With HOMING_ID set (the compose POP, a lab host), it writes homingd's configuration from
# the environment, hands the NIC (HOMING_NIC, default eth0: the container's interface on
# the POP LAN) to DPDK's net_af_packet and keeps the kernel off it, starts the echo service
# if HOMING_ECHO is set, and runs the command. Without HOMING_ID it runs the command with
# the mounted /etc/homing/homingd.toml (a production host, see README.md).
#
# homingd runs as the user homing with only the capabilities it needs (HOMING_USER=root
# keeps root): see the capability list in README.md.
#
# Environment (lab mode):
#   HOMING_ID, HOMING_ADDR         host id and address on the POP LAN (required)
#   HOMING_VIP, HOMING_GW          the VIP, the router's address on the LAN (required)
#   HOMING_PREFIX_LEN              the LAN's prefix length (24)
#   HOMING_NIC                     the interface DPDK takes (eth0)
#   HOMING_METRICS_LISTEN          metrics address (127.0.0.1:9370; "" turns metrics off;
#                                  0.0.0.0:9370 publishes them on every address)
#   HOMING_GOSSIP_KEY_FILE         the gossip key file (/etc/homing/gossip.key), readable by
#                                  the user homing (uid 970); empty or missing: insecure
#                                  gossip (a lab only)
#   HOMING_HUGEPAGES               true: DPDK with hugepages (reserve them on the machine)
#   HOMING_ECHO                    ADDR:PORT of an echo service to run beside homingd
#   HOMING_REDIRECT                false: plain ECMP (tunnel.redirect = false)
set -eu
log() { echo "homing-entrypoint: $*" >&2; }
die() { log "$*"; exit 1; }

# drop CAPS CMD... runs CMD as the user homing with only CAPS (ambient capabilities); as
# it is with HOMING_USER=root, or when not run by root.
drop() {
    caps=$1
    shift
    if [ "${HOMING_USER:-homing}" = root ] || [ "$(id -u)" != 0 ]; then
        exec "$@"
    fi
    exec setpriv --reuid=homing --regid=homing --init-groups \
        --inh-caps="-all${caps:+,$caps}" --ambient-caps="-all${caps:+,$caps}" -- "$@"
}

# Installed as homingctl too: the control socket is the daemon user's alone (0600), and
# root in the container has no CAP_DAC_OVERRIDE, so homingctl runs as that user.
if [ "$(basename "$0")" = homingctl ]; then
    drop "" /usr/local/lib/homing/homingctl "$@"
fi

# ownCgroup prints this container's cgroup v2 directory, where the sock_ops probe attaches:
# the services on the VIP run in it. Docker with the cgroupfs driver on a hybrid (v1 + v2)
# machine puts the container into /docker/<id> of the unified hierarchy but mounts only the
# v1 ones: the unified hierarchy must be mounted read-only at /sys/fs/cgroup/unified
# (compose.yaml); on a pure v2 machine /sys/fs/cgroup is it.
ownCgroup() {
    path=$(sed -n 's/^0:://p' /proc/self/cgroup)
    [ -n "$path" ] || die "no cgroup v2 entry in /proc/self/cgroup"
    for root in /sys/fs/cgroup/unified /sys/fs/cgroup; do
        if [ "$(stat -f -c %T "$root" 2>/dev/null)" = cgroup2fs ] && [ -d "$root$path" ]; then
            echo "${root}${path%/}"
            return
        fi
    done
    die "cgroup v2 directory of $path not found: mount the unified hierarchy at /sys/fs/cgroup/unified (read-only)"
}

case "${1:-}" in
homingd | */homingd) start=1 ;;
*) start= ;;
esac

if [ -n "$start" ] && [ -n "${HOMING_ID:-}" ]; then
    : "${HOMING_ADDR:?HOMING_ADDR is required with HOMING_ID}"
    : "${HOMING_VIP:?HOMING_VIP is required with HOMING_ID}"
    : "${HOMING_GW:?HOMING_GW is required with HOMING_ID}"
    nic=${HOMING_NIC:-eth0}
    metrics=${HOMING_METRICS_LISTEN-127.0.0.1:9370}
    key=${HOMING_GOSSIP_KEY_FILE:-/etc/homing/gossip.key}
    if [ -s "$key" ]; then
        gossip="key_file = \"$key\""
    else
        log "no gossip key in $key: gossip is unauthenticated (a lab only)"
        gossip="insecure = true"
    fi
    cgroup=$(ownCgroup)
    cat > /etc/homing/homingd.toml <<TOML
# Written by homing-entrypoint from the container's environment.
[host]
id = ${HOMING_ID}
name = "$(hostname)"
address = "${HOMING_ADDR}"
gateway = "${HOMING_GW}"
vips = ["${HOMING_VIP}"]

[dpdk]
file_prefix = "homing-${HOMING_ID}"
hugepages = ${HOMING_HUGEPAGES:-false}
memory_mb = 192
workers = 1
idle_sleep_max_us = 200
log_level = "warning"

[nic]
device = "net_af_packet0,iface=${nic},qpairs=1"
rx_desc = 512
tx_desc = 512

[kernel]
device = "net_tap0,iface=homing0"
name = "homing0"
addresses = ["${HOMING_ADDR}/${HOMING_PREFIX_LEN:-24}"]
routes = [{ to = "0.0.0.0/0", via = "${HOMING_GW}" }]

[tunnel]
redirect = ${HOMING_REDIRECT:-true}

[table]
capacity4 = 65536
capacity6 = 1024

[gossip]
${gossip}
heartbeat_interval = "100ms"
down_after = 20

[probe]
cgroup = "${cgroup}"

[metrics]
listen = "${metrics}"
TOML
    chown root:homing /etc/homing/homingd.toml
    chmod 0640 /etc/homing/homingd.toml
    # net_af_packet reads frames as the kernel left them: complete checksums first.
    ethtool -K "$nic" tx off >/dev/null 2>&1 || log "ethtool -K $nic tx off failed"
    # The host address lives on homingd's TAP interface (homing0), not on the NIC; the
    # kernel must not also answer what DPDK takes from the NIC.
    ip addr flush dev "$nic"
    ip route flush dev "$nic" 2>/dev/null || true
    nft -f - <<NFT
table netdev homing
delete table netdev homing
add table netdev homing
add chain netdev homing in { type filter hook ingress device "$nic" priority 0; policy drop; }
NFT
    log "host ${HOMING_ID} ${HOMING_ADDR}: $nic to DPDK, probe on $cgroup, metrics on ${metrics:-(off)}"
fi

if [ -n "$start" ] && [ -n "${HOMING_ECHO:-}" ]; then
    (drop +net_bind_service homing-popclient serve "$HOMING_ECHO") &
fi
# BPF (the sock_ops probe): CAP_BPF and CAP_PERFMON where the engine can grant them (Docker
# 23 and later), else CAP_SYS_ADMIN (Docker 20.10 knows neither; its seccomp profile then
# allows bpf(2) for SYS_ADMIN only).
bpfcaps=+sys_admin
bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
if [ $(((0x$bnd >> 39) & 1)) = 1 ] && [ $(((0x$bnd >> 38) & 1)) = 1 ]; then
    bpfcaps=+bpf,+perfmon
fi
if [ -n "$start" ]; then
    drop "+net_admin,+net_raw,+ipc_lock,$bpfcaps" "$@"
fi
exec "$@"
