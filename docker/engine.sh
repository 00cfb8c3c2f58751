#!/bin/sh
# A private Docker engine for homing's image build and compose POP (tests, CI, a laptop).
#
#   docker/engine.sh start    start dockerd (Debian's docker.io) unless it already runs
#   docker/engine.sh stop     stop it and remove the interfaces it made
#   docker/engine.sh env      print the DOCKER_HOST line to eval in a shell
#
# The engine is private: its own socket, data root and exec root (HOMING_DOCKER_ROOT,
# default /var/lib/homing-docker; /run/homing-docker), so that it never meets a system
# dockerd. Its settings are docker/daemon.json: the default bridge (198.19.192.1/24) and
# the address pool of networks without a fixed subnet (198.19.196.0/22) lie inside the
# benchmarking range 198.18.0.0/15, away from the namespace lab's subnets; it writes no
# iptables rules, enables no IP forwarding on the machine and masquerades nothing, so a
# container reaches no address outside its networks (image builds use --network host).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${HOMING_DOCKER_ROOT:-/var/lib/homing-docker}
run=/run/homing-docker
sock=unix://$run/docker.sock
export DOCKER_HOST=$sock

up() { [ -S "$run/docker.sock" ] && /usr/bin/docker version >/dev/null 2>&1; }

# cleanlinks removes the bridges this engine makes and leaves behind: its default bridge
# (docker0 stays after dockerd stops) and, after a killed dockerd, its networks' bridges,
# recognised by an address in 198.19.192.0/20 (daemon.json, compose.yaml). Their veths
# go with them.
cleanlinks() {
    for br in $(ip -o link show type bridge | sed -n 's/^[0-9]*: \([^:@]*\)[:@].*/\1/p'); do
        if ip -4 -o addr show dev "$br" | grep -q ' inet 198\.19\.\(19[2-9]\|20[0-7]\)\.'; then
            ip link del "$br" 2>/dev/null || true
        fi
    done
}

case "${1:-}" in
start)
    if up; then exit 0; fi
    command -v dockerd >/dev/null || { echo "engine: dockerd missing (apt-get install docker.io; make deps)" >&2; exit 1; }
    mkdir -p "$root" "$run"
    # Interfaces a killed engine left behind would block the bridge's address.
    cleanlinks
    nohup dockerd --config-file "$here/daemon.json" -H "$sock" --data-root "$root" \
        --exec-root "$run/exec" --pidfile "$run/dockerd.pid" >"$run/dockerd.log" 2>&1 &
    i=0
    until up; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $! 2>/dev/null; then
            echo "engine: dockerd did not start; $run/dockerd.log:" >&2
            tail -20 "$run/dockerd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "engine: dockerd up (pid $(cat "$run/dockerd.pid"), $sock)"
    ;;
stop)
    if [ -f "$run/dockerd.pid" ]; then
        pid=$(cat "$run/dockerd.pid")
        if kill "$pid" 2>/dev/null; then
            i=0
            while kill -0 "$pid" 2>/dev/null; do
                i=$((i + 1))
                if [ $i -gt 300 ]; then kill -9 "$pid" 2>/dev/null || true; fi
                sleep 0.1
            done
        fi
        rm -f "$run/dockerd.pid"
    fi
    cleanlinks
    # dockerd leaves the machine's network namespace bind-mounted in its exec root.
    for m in $(awk -v r="$run/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo); do
        umount "$m" 2>/dev/null || true
    done
    rm -rf "$run/exec"
    echo "engine: dockerd stopped"
    ;;
env)
    echo "export DOCKER_HOST=$sock"
    ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
