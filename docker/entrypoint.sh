#!/bin/sh
# Lab entrypoint: with HOMING_ID and HOMING_ADDR set (compose.yaml), write a lab
# configuration, hand eth0 to DPDK (net_af_packet) and move its address to the TAP;
# otherwise run the command as given with the mounted /etc/homing/homingd.toml.
set -eu
if [ -n "${HOMING_ID:-}" ]; then
    cat > /etc/homing/homingd.toml <<TOML
[host]
id = ${HOMING_ID}
address = "${HOMING_ADDR}"
vips = ["${HOMING_VIP:-198.19.255.1}"]
[dpdk]
file_prefix = "homing-${HOMING_ID}"
memory_mb = 256
idle_sleep_max_us = 200
[nic]
device = "net_af_packet0,iface=eth0"
[kernel]
addresses = ["${HOMING_ADDR}/24"]
routes = [{ to = "0.0.0.0/0", via = "${HOMING_GW:-198.18.0.1}" }]
[gossip]
insecure = true
[probe]
enabled = true
[metrics]
listen = "0.0.0.0:9370"
TOML
    ethtool -K eth0 tx off >/dev/null 2>&1 || true     # complete checksums before af_packet reads them
    ip addr flush dev eth0                             # the host address lives on homing0
    nft -f - <<NFT
table netdev homing { chain in { type filter hook ingress device eth0 priority 0; policy drop; } }
NFT
fi
exec "$@"
