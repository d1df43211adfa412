#!/usr/bin/env bash
# Runs cvbench inside a nested, hardware-style KVM: an L1 Linux (Debian 12's stock kernel) booted by
# QEMU's TCG with AMD SVM and nested paging emulated (`-cpu EPYC,+svm,+npt`). In L1, `kvm_amd`
# gives a `/dev/kvm` that runs a stock guest kernel as hardware KVM would, so the microVM's whole
# Linux path (cvbench-vmm booting the guest kernel to READY and RESULT) can be seen on a machine
# without hardware KVM. Every figure from it is emulated twice over (TCG under L1's KVM): it shows
# function, never speed. The results' host record says `kvm: nested-svm-tcg`.
#
# Usage:
#   scripts/nested-kvm.sh [options] -- bench <arguments>   run one bench command in L1
#   scripts/nested-kvm.sh [options] --script FILE           run a POSIX sh script in L1 (tests)
#   scripts/nested-kvm.sh --build                           build the L1 (cached), print its directory
# Options:
#   --profile release|debug  which cvbench build goes into L1 (default release; debug if no release)
#   --job DIR        use DIR (created, kept) as the job directory shared with L1 over 9p; its files:
#                    run.sh (what L1 runs), log (its output), rc (its exit status), serial.log
#   --timeout SECS   kill L1 after SECS seconds (default 3600)
#   --memory MIB     L1 RAM (default 1536)
#   --smp N          L1 vCPUs (default 1: TCG threads are host CPU time)
#   --keep-serial FILE  copy L1's serial console log to FILE
#   --no-fetch       never install or download anything: exit 3 if a package or the L1 kernel is
#                    missing (tests use it; scripts/setup.sh --packages fetches both)
#   --fetch          install the packages and fetch the L1 kernel, then exit
#
# `--out DIR` and `--json FILE` in the bench arguments name host paths: bench writes them in L1 and
# they are copied to those paths afterwards, as if bench had run on the host. A bench command given
# no `--out` writes `cvbench-results/` in the current directory, also as on the host. CVBENCH_*
# variables in the environment are passed to bench in L1. The exit status is bench's (or the
# script's), 1 when L1 did not finish.
#
# The L1 (kernel, initramfs with busybox, the kvm, 9p, tun, veth and bridge modules, QEMU,
# e2fsprogs, iproute2's `ip`, wrk and sysbench with their libraries, the cvbench binaries and the guest
# kernel) is cached by content hash under /var/cache/cvbench/nested/<hash>/ (CVBENCH_CACHE moves the
# root). Packages: busybox-static, qemu-system-x86, e2fsprogs, kmod, cpio, iproute2, wrk, sysbench (installed
# if missing); Debian's linux-image-amd64 is
# fetched with `apt-get download` and unpacked, never installed.
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
root="$(cd "$(dirname "$self")/.." && pwd)"
cache_root="${CVBENCH_CACHE:-/var/cache/cvbench}"
nested_cache="$cache_root/nested"
packages=(busybox-static qemu-system-x86 e2fsprogs kmod cpio fonts-dejavu-core iproute2 wrk sysbench)
# Modules L1 loads (with their dependencies, resolved at build time): /dev/kvm, the 9p share,
# /dev/net/tun for the VMMs' taps, and veth and bridge for http-outside's client namespace (a veth
# per instance; in a VM's instance namespace a bridge joins it to the tap, see backends/vm_net.rs).
l1_modules=(virtio_pci 9pnet_virtio 9p kvm-amd tun veth bridge)
# The kernel-command-line marker that tells the harness in L1 its KVM is nested SVM on TCG.
marker="cvbench.l0=tcg-svm"
bins=(bench cvbench-vmm cvbench-guest-init cvbench-workload cvbench-testproc)

log() { printf 'nested-kvm: %s\n' "$*" >&2; }
die() { printf 'nested-kvm: error: %s\n' "$*" >&2; exit "${2:-1}"; }

profile=""
job=""
timeout_s=3600
memory_mib=1536
smp=1
keep_serial=""
script=""
build_only=0
no_fetch=0
fetch_only=0
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
        --job) job="${2:?--job needs a directory}"; shift 2 ;;
        --timeout) timeout_s="${2:?--timeout needs seconds}"; shift 2 ;;
        --memory) memory_mib="${2:?--memory needs MiB}"; shift 2 ;;
        --smp) smp="${2:?--smp needs a count}"; shift 2 ;;
        --keep-serial) keep_serial="${2:?--keep-serial needs a file}"; shift 2 ;;
        --script) script="${2:?--script needs a file}"; shift 2 ;;
        --build) build_only=1; shift ;;
        --no-fetch) no_fetch=1; shift ;;
        --fetch) fetch_only=1; shift ;;
        --) shift; bench_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (bench arguments go after --)" 2 ;;
    esac
done
if [ "$build_only" -eq 0 ] && [ "$fetch_only" -eq 0 ] && [ -z "$script" ]; then
    [ "${#bench_args[@]}" -gt 0 ] && [ "${bench_args[0]}" = bench ] \
        || die "usage: nested-kvm.sh [options] -- bench <arguments> (or --script FILE, --build)" 2
fi

target_dir="$root/target/x86_64-unknown-linux-gnu"
if [ -z "$profile" ]; then
    profile=release
    [ -x "$target_dir/release/bench" ] || profile=debug
fi
bin_dir="$target_dir/$profile"

ensure_packages() {
    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$no_fetch" -eq 0 ] || die "packages missing: ${missing[*]} (scripts/setup.sh --packages installs them)" 3
    [ "$(id -u)" -eq 0 ] || die "need root to install: ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
}

# Debian's stock kernel, unpacked (not installed) under the cache; prints the unpacked root.
l1_kernel_root() {
    local pkg version dir
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 (apt-get update?)"
    version="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
    dir="$nested_cache/kernel/$pkg-$version"
    if [ ! -d "$dir/root/boot" ]; then
        [ "$no_fetch" -eq 0 ] || die "the L1 kernel $pkg $version is not fetched (scripts/setup.sh --packages fetches it)" 3
        local tmp
        tmp="$(mktemp -d "$nested_cache/kernel/.fetch.XXXXXX")"
        (cd "$tmp" && apt-get download -qq "$pkg=$version" 2>/dev/null) || {
            rm -rf "$tmp"
            die "apt-get download $pkg=$version failed"
        }
        dpkg-deb -x "$tmp"/*.deb "$tmp/root"
        rm -f "$tmp"/*.deb
        rm -rf "$dir"
        mv "$tmp" "$dir"
    fi
    printf '%s\n' "$dir/root"
}

# Copies dynamically linked programs with every library ldd names into the staging root.
copy_with_libs() {
    local stage="$1" prog lib
    shift
    for prog in "$@"; do
        mkdir -p "$stage$(dirname "$prog")"
        cp -L "$prog" "$stage$prog"
        ldd "$prog" | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | while read -r lib; do
            [ -e "$stage$lib" ] && continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done
    done
}

# Module dependency order (dependencies first) for the wanted modules of kernel tree $1.
module_order() {
    local kroot="$1" kver="$2" m
    local -A seen=()
    visit() {
        local name="$1" file dep
        name="${name//-/_}"
        [ -n "${seen[$name]:-}" ] && return 0
        seen[$name]=1
        file="$(find "$kroot/lib/modules/$kver/kernel" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) | head -1)"
        # Built in (e.g. ccp): nothing to load.
        [ -n "$file" ] || { grep -q "/${name}.ko$\|/${name//_/-}.ko$" "$kroot/lib/modules/$kver/modules.builtin" \
            || die "module $name is neither in the package nor built in"; return 0; }
        for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
            visit "$dep"
        done
        printf '%s\n' "${file#"$kroot/lib/modules/$kver/"}"
    }
    for m in "${l1_modules[@]}"; do visit "$m"; done
}

# The guest kernel L2 boots: the project's cached build.
guest_kernel_dir() {
    if [ -n "${CVBENCH_GUEST_KERNEL:-}" ]; then
        if [ -d "$CVBENCH_GUEST_KERNEL" ]; then printf '%s\n' "$CVBENCH_GUEST_KERNEL"; else dirname "$CVBENCH_GUEST_KERNEL"; fi
        return
    fi
    # The current config's build, else (as the harness's locate_guest_kernel) the newest one built.
    local dir newest
    if dir="$("$root/guest/kernel/build.sh" --print-path 2>/dev/null)"; then
        printf '%s\n' "$dir"
        return
    fi
    newest="$(ls -t "$cache_root"/kernel/*/vmlinux 2>/dev/null | head -1)"
    [ -n "$newest" ] || die "no guest kernel built (run guest/kernel/build.sh)" 3
    log "the guest kernel of the current config is not built; using the newest one, $newest"
    dirname "$newest"
}

write_init() {
    cat > "$1" <<'INIT'
#!/bin/busybox sh
# PID 1 of the nested-KVM L1: mounts, loads the kvm and 9p modules, runs /job/run.sh with its
# output in /job/log (and on the serial console), its exit status in /job/rc, then powers off.
/bin/busybox --install -s /bin
export PATH=/opt/cvbench/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/tmp /job /var/cache/cvbench
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
while read -r m; do
    insmod "/lib/modules/$(uname -r)/$m" || echo "nested-l1: insmod $m failed" > /dev/console
done < /etc/cvbench-nested/modules
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none cvjob /job; then
    echo "nested-l1: cannot mount the 9p job share" > /dev/console
    poweroff -f
fi
hostname cvbench-l1
ifconfig lo 127.0.0.1 up 2>/dev/null
[ -e /dev/kvm ] || echo "nested-l1: /dev/kvm missing after loading kvm_amd" > /dev/console
cd /job/cwd 2>/dev/null || cd /job
(
    set -o pipefail
    { sh /job/run.sh; echo $? > /job/rc.tmp; } 2>&1 | tee /job/log > /dev/console
)
mv /job/rc.tmp /job/rc 2>/dev/null || echo 1 > /job/rc
sync
poweroff -f
INIT
    chmod 755 "$1"
}

# Builds the L1 (or finds it cached); prints its directory.
build_l1() {
    ensure_packages
    mkdir -p "$nested_cache/kernel"
    local kroot kver gk stage hash dest b
    kroot="$(l1_kernel_root)"
    kver="$(basename "$(find "$kroot/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)")"
    gk="$(guest_kernel_dir)"
    for b in "${bins[@]}"; do
        [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing (cargo build --workspace --bins${profile:+ --profile $profile})"
    done
    stage="$(mktemp -d "$nested_cache/.stage.XXXXXX")"
    # build_l1 always runs in a subshell: this removes the staging tree on every exit path.
    # shellcheck disable=SC2064
    trap "rm -rf '$stage'" EXIT
    mkdir -p "$stage"/{bin,sbin,etc/cvbench-nested,proc,sys,dev,opt/cvbench/bin,usr/share/qemu}
    cp /bin/busybox "$stage/bin/busybox"
    write_init "$stage/init"
    module_order "$kroot" "$kver" > "$stage/etc/cvbench-nested/modules"
    while read -r m; do
        mkdir -p "$stage/lib/modules/$kver/$(dirname "$m")"
        cp "$kroot/lib/modules/$kver/$m" "$stage/lib/modules/$kver/$m"
    done < "$stage/etc/cvbench-nested/modules"
    copy_with_libs "$stage" /usr/bin/qemu-system-x86_64 /usr/sbin/mke2fs /usr/sbin/debugfs /usr/sbin/e2fsck
    # http-outside: iproute2's `ip` (netns, veth, bridge; busybox's applet has no netns) ahead of
    # busybox's on PATH, and wrk in the client namespace. `ip netns` keeps its names under
    # /var/run/netns, which is /run/netns as on Debian.
    copy_with_libs "$stage" /usr/sbin/ip /usr/bin/wrk
    # mariadb (--image services): sysbench loads the services image's MariaDB from the client
    # namespace; its oltp_* tests are Lua scripts in /usr/share/sysbench.
    copy_with_libs "$stage" /usr/bin/sysbench
    mkdir -p "$stage/usr/share"
    cp -r /usr/share/sysbench "$stage/usr/share/sysbench"
    mkdir -p "$stage/var"
    ln -s ../run "$stage/var/run"
    ln -s mke2fs "$stage/usr/sbin/mkfs.ext4"
    cp /etc/mke2fs.conf "$stage/etc/mke2fs.conf"
    for f in bios-microvm.bin qboot.rom linuxboot.bin linuxboot_dma.bin kvmvapic.bin pvh.bin multiboot.bin multiboot_dma.bin; do
        [ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$stage/usr/share/qemu/$f"
    done
    # The report's chart font (fonts-dejavu-core), at the path bench looks for it.
    for f in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf; do
        [ -e "$f" ] || continue
        mkdir -p "$stage$(dirname "$f")"
        cp -L "$f" "$stage$f"
    done
    for b in "${bins[@]}"; do
        strip --strip-debug -o "$stage/opt/cvbench/bin/$b" "$bin_dir/$b" 2>/dev/null \
            || cp "$bin_dir/$b" "$stage/opt/cvbench/bin/$b"
    done
    mkdir -p "$stage/var/cache/cvbench/kernel/$(basename "$gk")"
    cp "$gk/vmlinux" "$stage/var/cache/cvbench/kernel/$(basename "$gk")/vmlinux"
    printf 'ID=debian\nPRETTY_NAME="cvbench nested-KVM L1 (busybox, Debian kernel %s)"\n' "$kver" > "$stage/etc/os-release"
    printf 'root:x:0:0:root:/:/bin/sh\n' > "$stage/etc/passwd"
    printf 'root:x:0:\n' > "$stage/etc/group"
    cp "$kroot/boot/vmlinuz-$kver" "$stage/vmlinuz"
    # The key: every file's path, mode and bytes, and this script.
    hash="$( { cd "$stage" && find . \( -type f -o -type l \) -printf '%p %m %l\n' | LC_ALL=C sort \
        && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; cat "$self"; } \
        | sha256sum | cut -c1-16)"
    dest="$nested_cache/$hash"
    if [ ! -f "$dest/initrd.cpio" ]; then
        log "building L1 $dest"
        local tmp="$nested_cache/.build.$hash.$$"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        mv "$stage/vmlinuz" "$tmp/vmlinuz"
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet > "$tmp/initrd.cpio")
        printf '%s\n' "$kver" > "$tmp/kernel-version"
        rm -rf "$dest"
        mv "$tmp" "$dest"
    fi
    touch "$dest"
    # Keep the four most recently used L1s (each about 100 MiB).
    find "$nested_cache" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' \
        -printf '%T@ %p\n' | sort -rn | tail -n +5 | cut -d' ' -f2- | xargs -r rm -rf
    printf '%s\n' "$dest"
}

if [ "$fetch_only" -eq 1 ]; then
    ensure_packages
    mkdir -p "$nested_cache/kernel"
    l1_kernel_root > /dev/null
    exit 0
fi
if [ "$build_only" -eq 1 ]; then
    (build_l1)
    exit 0
fi

l1="$(build_l1)"

qemu_pid=""
tail_pid=""
own_job=0
finish() {
    local rc=$?
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        sleep 1
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [ -n "$tail_pid" ]; then
        sleep 1 # tail -F polls once a second: let it print L1's last lines
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
    fi
    [ -n "$keep_serial" ] && [ -f "$job/serial.log" ] && cp "$job/serial.log" "$keep_serial"
    [ "$own_job" -eq 1 ] && [ -n "$job" ] && rm -rf "$job"
    exit "$rc"
}
trap finish EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# The job directory, shared with L1 over 9p.
if [ -z "$job" ]; then
    job="$(mktemp -d "${TMPDIR:-/tmp}/cvbench-nested.XXXXXX")"
    own_job=1
fi
mkdir -p "$job/cwd" "$job/out"
rm -f "$job/rc" "$job/rc.tmp" "$job/log" "$job/serial.log"

# Host paths named by --out/--json, mapped into L1.
copy_back=()
if [ -z "$script" ]; then
    l1_args=()
    i=0
    n=0
    args=("${bench_args[@]:1}")
    while [ $i -lt ${#args[@]} ]; do
        a="${args[$i]}"
        case "$a" in
            --out|--json)
                host_path="${args[$((i + 1))]:?$a needs a value}"
                l1_path="/job/out/$n-$(basename "$host_path")"
                l1_args+=("$a" "$l1_path")
                copy_back+=("$job/out/$n-$(basename "$host_path")=$host_path")
                n=$((n + 1))
                i=$((i + 2))
                continue ;;
            --out=*|--json=*)
                host_path="${a#*=}"
                l1_path="/job/out/$n-$(basename "$host_path")"
                l1_args+=("${a%%=*}=$l1_path")
                copy_back+=("$job/out/$n-$(basename "$host_path")=$host_path")
                n=$((n + 1)) ;;
            *) l1_args+=("$a") ;;
        esac
        i=$((i + 1))
    done
    {
        echo '#!/bin/sh'
        # (Host paths in CVBENCH_GUEST_KERNEL, CVBENCH_BIN_DIR, CVBENCH_CACHE mean nothing in L1.)
        { env | grep -E '^CVBENCH_[A-Z0-9_]+=' | grep -v '^CVBENCH_GUEST_KERNEL=\|^CVBENCH_BIN_DIR=\|^CVBENCH_CACHE=' || true; } \
            | while IFS= read -r kv; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
        printf 'exec bench'
        printf ' %q' "${l1_args[@]}"
        printf '\n'
    } > "$job/run.sh"
else
    cp "$script" "$job/run.sh"
fi


log "booting L1 ($l1, TCG with SVM; console in $job/serial.log)"
started=$(date +%s)
# setpriv: QEMU dies with this script even if the script is killed outright.
setpriv --pdeathsig KILL qemu-system-x86_64 -M q35 -accel tcg -cpu EPYC,+svm,+npt,+nrip-save -m "$memory_mib" -smp "$smp" \
    -nodefaults -no-user-config -nographic -no-reboot \
    -serial "file:$job/serial.log" \
    -kernel "$l1/vmlinuz" -initrd "$l1/initrd.cpio" \
    -append "console=ttyS0 panic=-1 loglevel=4 $marker" \
    -virtfs "local,path=$job,mount_tag=cvjob,security_model=none,id=cvjob" \
    2> "$job/qemu.log" &
qemu_pid=$!
echo "$qemu_pid" > "$job/qemu.pid"
if [ -z "$script" ]; then
    # bench's output, as L1 writes it.
    touch "$job/log"
    tail -n +1 -F "$job/log" 2>/dev/null &
    tail_pid=$!
fi
deadline=$((started + timeout_s))
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "L1 did not finish within ${timeout_s}s; killing it"
        break
    fi
    sleep 1
done
if kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
log "L1 ran $(( $(date +%s) - started ))s"

if [ ! -f "$job/rc" ]; then
    log "L1 did not finish its job; QEMU said:"
    grep -v "TCG doesn't support requested feature" "$job/qemu.log" >&2 || true
    log "last lines of L1's console:"
    tail -n 30 "$job/serial.log" >&2 || true
    exit 1
fi
rc="$(cat "$job/rc")"
for pair in "${copy_back[@]}"; do
    src="${pair%%=*}"
    dst="${pair#*=}"
    [ -e "$src" ] || continue
    mkdir -p "$(dirname "$dst")"
    rm -rf "$dst"
    cp -a "$src" "$dst"
    log "copied ${src#"$job"/} out of L1 to $dst"
done
# Relative outputs (bench compare's default cvbench-results/) land in the current directory.
if [ -z "$script" ] && [ -n "$(ls -A "$job/cwd")" ]; then
    cp -a "$job/cwd/." .
fi
exit "$rc"
