#!/usr/bin/env bash
# Builds the cvbench image (deploy/Dockerfile) from Debian only, with no registry needed.
#
# Usage: scripts/build-image.sh [--prebuilt] [--debootstrap | --base IMAGE] [--tag TAG] [--ca-cert FILE]...
#   --prebuilt     put this host's release build in the image (target/.../release/bench and the
#                  static cvbench-* binaries, and the guest kernel of guest/kernel/build.sh); run
#                  scripts/setup.sh first. Without it the image compiles everything itself (slow:
#                  the whole workspace and the guest kernel, from Debian's cargo-web and linux-source).
#   --debootstrap  make the base image cvbench-base:bookworm first, with
#                  `debootstrap --variant=minbase bookworm` from $DEBIAN_MIRROR and `docker import`
#                  (kept: a second run reuses it), and build on it. For hosts that reach Debian's
#                  mirrors but no container registry.
#   --base IMAGE   the Debian bookworm base to build on (default debian:bookworm).
#   --tag TAG      the image's tag (default cvbench:latest).
#   --ca-cert FILE a PEM certificate the build stage trusts besides Debian's (a TLS-intercepting
#                  proxy in front of crates.io); repeatable. Not in the final image.
#
# Docker: $DOCKER_HOST if set, else the system daemon. The build runs with host networking, for apt
# (Debian's mirrors) and, without --prebuilt, cargo (crates.io). The image's entrypoint is `bench`;
# like the DaemonSet, give it /run/cvbench off the image's overlayfs and a writable cgroup tree:
#   docker run --rm --privileged --device /dev/kvm -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
#       -v "$PWD/run:/run/cvbench" TAG run --backend container --workload idle --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-image: %s\n' "$*" >&2; }

prebuilt=0
debootstrap=0
base="debian:bookworm"
tag="cvbench:latest"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
local_base="cvbench-base:bookworm"
ca_certs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prebuilt) prebuilt=1 ;;
        --debootstrap) debootstrap=1 ;;
        --base) [ $# -ge 2 ] || die "--base needs an image"; base="$2"; shift ;;
        --tag) [ $# -ge 2 ] || die "--tag needs a tag"; tag="$2"; shift ;;
        --ca-cert)
            [ $# -ge 2 ] || die "--ca-cert needs a file"
            grep -q -- '-----BEGIN CERTIFICATE-----' "$2" 2>/dev/null || die "--ca-cert $2: not a readable PEM certificate"
            ca_certs+="$(cat "$2")"$'\n'
            shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

command -v docker >/dev/null 2>&1 || die "docker (the CLI) is not installed: apt-get install docker.io"
docker version >/dev/null 2>&1 || die "no Docker daemon answers at ${DOCKER_HOST:-the system socket}; start one (systemctl start docker, or dockerd -H unix:///run/NAME.sock --data-root DIR --exec-root DIR --pidfile FILE --iptables=false --bridge=none) and set DOCKER_HOST=unix:///run/NAME.sock"

# Temporary directories, removed however the script ends.
tmp_dirs=()
cleanup() {
    local d
    for d in "${tmp_dirs[@]}"; do
        rm -rf --one-file-system "$d"
    done
}
trap cleanup EXIT

if [ $debootstrap -eq 1 ]; then
    base="$local_base"
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        log "base $local_base exists; reusing it (docker rmi $local_base to remake it)"
    else
        command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed: apt-get install debootstrap"
        [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
        rootfs="$(mktemp -d /var/tmp/cvbench-base.XXXXXX)"
        tmp_dirs+=("$rootfs")
        log "debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
            || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
        rm -f "$rootfs.log"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -c . | docker import -c 'CMD ["bash"]' - "$local_base" >/dev/null
        log "imported $local_base"
    fi
fi

if [ $prebuilt -eq 1 ]; then
    release="target/x86_64-unknown-linux-gnu/release"
    [ -x "$release/bench" ] || die "$release/bench is missing: run scripts/setup.sh (or cargo build --release --workspace --bins) first"
    kernel="$(guest/kernel/build.sh --print-path 2>/dev/null)" \
        || die "no guest kernel built for this tree: run guest/kernel/build.sh (or scripts/setup.sh) first"
    context="$(mktemp -d /var/tmp/cvbench-image-context.XXXXXX)"
    tmp_dirs+=("$context")
    mkdir -p "$context/prebuilt/bin" "$context/prebuilt/kernel/$(basename "$kernel")"
    for bin in "$release"/bench "$release"/cvbench-*; do
        [ -f "$bin" ] && [ -x "$bin" ] && cp "$bin" "$context/prebuilt/bin/"
    done
    cp "$kernel"/vmlinux "$kernel"/bzImage "$kernel"/config "$context/prebuilt/kernel/$(basename "$kernel")/"
    log "staged $(find "$context/prebuilt/bin" -type f | wc -l) binaries and kernel $(basename "$kernel") ($(du -sh "$context" | cut -f1))"
    artifacts=prebuilt
else
    context=.
    artifacts=source
fi

log "building $tag on $base (ARTIFACTS=$artifacts)"
# DOCKER_BUILDKIT=0: the classic builder ships with every docker.io; BuildKit needs the buildx plugin.
DOCKER_BUILDKIT=0 docker build --network host \
    --build-arg "BASE=$base" --build-arg "ARTIFACTS=$artifacts" --build-arg "EXTRA_CA_CERTS=$ca_certs" \
    -f deploy/Dockerfile -t "$tag" "$context"
size="$(docker image inspect -f '{{.Size}}' "$tag")"
log "built $tag: $((size / 1024 / 1024)) MiB"
docker run --rm "$tag" --version
