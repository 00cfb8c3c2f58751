#!/bin/sh
# Builds the image homing:<version> (and tags homing:dev) from the binaries in bin/ (make
# build, plus bin/homing-popclient) on a Debian 12 base: HOMING_BASE if set (debian:12-slim
# where a registry is reachable), else the base docker/base-image.sh makes from Debian's
# packages. The build runs with --network host: its apt-get reaches the mirror through the
# machine's own network, not through a bridge. `make image` runs it on the private engine
# of docker/engine.sh.
set -eu
cd "$(dirname "$0")/.."
# Debian's docker.io client (/usr/bin/docker) speaks the engine's API version and builds
# without BuildKit; another docker earlier on PATH may not.
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
for b in homingd homingctl homing-popclient; do
    [ -x "bin/$b" ] || { echo "image: bin/$b missing (make image builds it)" >&2; exit 1; }
done
t0=$(date +%s)
base=${HOMING_BASE:-$(docker/base-image.sh)}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tag=$(echo "$version" | tr -c 'A-Za-z0-9_.\n-' '_')
$docker build --network host -f docker/Dockerfile \
    --build-arg BASE="$base" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    -t "homing:$tag" -t homing:dev .
# Earlier versions' tags and the images they leave are dead weight in the engine.
for old in $($docker image ls --format '{{.Repository}}:{{.Tag}}' homing); do
    [ "$old" = "homing:$tag" ] || [ "$old" = homing:dev ] || $docker image rm "$old" >/dev/null 2>&1 || true
done
$docker image prune -f >/dev/null
size=$($docker image inspect -f '{{.Size}}' homing:dev)
echo "image: homing:$tag (homing:dev) from $base, $((size / 1000000)) MB, built in $(($(date +%s) - t0)) s"
