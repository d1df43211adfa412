#!/usr/bin/env bash
# Builds the cvbench guest kernel (vmlinux + bzImage) from Debian's linux-source-6.1 with
# guest/kernel/cvbench.config applied on top of tinyconfig.
#
# Output: /var/cache/cvbench/kernel/<key>/{vmlinux,bzImage,config}, where <key> is a hash of the
# fragment, the source package version and this script. A run with that directory present does
# nothing but print it. The cache root can be moved with CVBENCH_CACHE (default /var/cache/cvbench).
#
# Usage: build.sh              build if needed, print the kernel directory on the last line
#        build.sh --print-path print the kernel directory if it is built, else exit 1
#
# Consumers find the kernel through CVBENCH_GUEST_KERNEL (a directory holding vmlinux) if set, else
# the newest /var/cache/cvbench/kernel/*/vmlinux.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fragment="$here/cvbench.config"
cache_root="${CVBENCH_CACHE:-/var/cache/cvbench}"
src_pkg="linux-source-6.1"
src_tarball="/usr/src/linux-source-6.1.tar.xz"
build_deps=(build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils kmod "$src_pkg")

log() { printf 'guest-kernel: %s\n' "$*" >&2; }
die() { printf 'guest-kernel: error: %s\n' "$*" >&2; exit 1; }

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

src_version() {
    dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null
}

# The key covers everything that changes the output. Without the package installed it covers the
# candidate version apt would install, so --print-path works before the first build too.
cache_key() {
    local version
    version="$(src_version || true)"
    if [[ -z "$version" ]]; then
        version="$(apt-cache policy "$src_pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    fi
    { cat "$fragment"; printf '%s\n' "$src_pkg=$version"; cat "${BASH_SOURCE[0]}"; } \
        | sha256sum | cut -c1-16
}

install_deps() {
    local missing=()
    for p in "${build_deps[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        log "apt-get install failed; running apt-get update once and retrying"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# Every line of the fragment must hold in the final .config: `CONFIG_X=v` exactly, and
# `# CONFIG_X is not set` as "not enabled" (absent or explicitly unset).
check_config() {
    local config="$1" failed=0 line sym
    while IFS= read -r line; do
        if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            if ! grep -qxF "$line" "$config"; then
                sym="${BASH_REMATCH[1]}"
                log "option $sym did not survive olddefconfig: wanted '$line', got '$(grep -E "^(# )?$sym[= ]" "$config" || echo absent)'"
                failed=1
            fi
        elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            sym="${BASH_REMATCH[1]}"
            if grep -qE "^$sym=" "$config"; then
                log "option $sym must be off but is '$(grep -E "^$sym=" "$config")'"
                failed=1
            fi
        fi
    done < "$fragment"
    [[ $failed -eq 0 ]] || die "kernel config check failed (see options above)"
}

main() {
    local print_only=0
    case "${1:-}" in
        --print-path) print_only=1 ;;
        "") ;;
        *) die "usage: $0 [--print-path]" ;;
    esac
    [[ -f "$fragment" ]] || die "config fragment $fragment is missing"

    local key out
    key="$(cache_key)"
    out="$cache_root/kernel/$key"
    if [[ -f "$out/vmlinux" && -f "$out/bzImage" && -f "$out/config" ]]; then
        printf '%s\n' "$out"
        return 0
    fi
    if [[ $print_only -eq 1 ]]; then
        log "no kernel built for key $key (run $0)"
        return 1
    fi

    local started=$SECONDS
    install_deps
    # The key may change once the package is installed (candidate vs installed version).
    key="$(cache_key)"
    out="$cache_root/kernel/$key"
    if [[ -f "$out/vmlinux" && -f "$out/bzImage" && -f "$out/config" ]]; then
        printf '%s\n' "$out"
        return 0
    fi

    local version src build
    version="$(src_version)"
    src="$cache_root/kernel-src/$version"
    # One build tree per source version: a changed fragment or script rebuilds incrementally.
    build="$cache_root/kernel-build/$version"
    if [[ ! -f "$src/.unpacked" ]]; then
        log "unpacking $src_tarball into $src"
        rm -rf "$src"
        mkdir -p "$src"
        tar -xJf "$src_tarball" -C "$src" --strip-components=1
        touch "$src/.unpacked"
    fi

    # Out-of-tree build: the unpacked source stays pristine.
    mkdir -p "$build"
    local mk=(make -C "$src" O="$build" ARCH=x86_64 -j"$(nproc)")
    log "configuring in $build"
    "${mk[@]}" tinyconfig >&2
    cat "$fragment" >> "$build/.config"
    "${mk[@]}" olddefconfig >&2
    check_config "$build/.config"

    log "building vmlinux and bzImage with -j$(nproc)"
    "${mk[@]}" vmlinux bzImage >&2

    # Publish atomically: readers never see a half-written kernel directory.
    local staging="$out.tmp.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    cp "$build/vmlinux" "$staging/vmlinux"
    cp "$build/arch/x86/boot/bzImage" "$staging/bzImage"
    cp "$build/.config" "$staging/config"
    rm -rf "$out"
    mv "$staging" "$out"
    log "built in $((SECONDS - started)) s: vmlinux $(stat -c %s "$out/vmlinux") bytes, bzImage $(stat -c %s "$out/bzImage") bytes"
    printf '%s\n' "$out"
}

# Sourcing the script (tests do) defines the functions without building anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
