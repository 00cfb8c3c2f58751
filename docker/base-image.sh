#!/bin/sh
# Makes the image's Debian 12 base from Debian's packages, for machines that reach no image
# registry but reach a Debian mirror: mmdebstrap --variant=minbase bookworm with this
# machine's apt sources, trimmed like debian:12-slim (no manuals, no documentation but the
# copyright files, no locales; usrmerge and the perl it pulled in, 47 MB, purged once the
# merge is done), imported into the engine as homing-base:bookworm-<key>.
# The key is a hash of the apt sources and this script: with an unchanged key the image
# already in the engine is reused, and the script only prints its name.
#
#   docker/base-image.sh          prints the image name (the only line on stdout)
#
# HOMING_APT_SOURCES names the sources file (default: /etc/apt/sources.list.d/debian.sources,
# else /etc/apt/sources.list). The engine is DOCKER_HOST's (docker/engine.sh env).
set -eu
# Debian's docker.io client (/usr/bin/docker) speaks the engine's API version and builds
# without BuildKit; another docker earlier on PATH may not.
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
src=${HOMING_APT_SOURCES:-}
if [ -z "$src" ]; then
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ]; then src=$f; break; fi
    done
fi
[ -n "$src" ] || { echo "base-image: no apt sources found (set HOMING_APT_SOURCES)" >&2; exit 1; }
key=$(cat "$src" "$0" | sha256sum | cut -c1-12)
name=homing-base:bookworm-$key
if $docker image inspect "$name" >/dev/null 2>&1; then
    echo "$name"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "base-image: mmdebstrap missing (make deps)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
echo "base-image: mmdebstrap bookworm from $src" >&2
mmdebstrap --quiet --variant=minbase --mode=root \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='chroot "$1" apt-get purge -y -qq usrmerge perl libperl5.36 perl-modules-5.36 libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl >/dev/null' \
    bookworm "$tmp/base.tar" "$src" >&2
$docker import --change 'CMD ["/bin/bash"]' \
    --message "mmdebstrap minbase bookworm, sources $src" "$tmp/base.tar" "$name" >/dev/null
# Older bases (other sources, another script) are dead weight in the engine.
for old in $($docker image ls --format '{{.Repository}}:{{.Tag}}' homing-base); do
    [ "$old" = "$name" ] || $docker image rm "$old" >/dev/null 2>&1 || true
done
echo "base-image: $name ($(($(date +%s) - t0)) s)" >&2
echo "$name"
