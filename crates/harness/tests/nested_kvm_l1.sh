#!/bin/sh
# Runs inside the nested-KVM L1 of scripts/nested-kvm.sh (busybox sh, /dev/kvm from kvm_amd on TCG's
# SVM), started by tests/nested_kvm.rs, which checks what this leaves in /job/out. Every step
# records its exit status and output there; nothing here decides pass or fail.
out=/job/out
mkdir -p "$out"
step() { echo "nested-l1-step: $(cut -d' ' -f1 /proc/uptime)s $*" > /dev/console; }

# Paths the test binaries were compiled to expect (CARGO_BIN_EXE_*), as links to L1's copies.
if [ -f /job/links ]; then
    while read -r path target; do
        mkdir -p "$(dirname "$path")" && ln -sf "$target" "$path"
    done < /job/links
fi

# The whole harness path: bench runs each workload twice on the microvm backend (no warm-up: the
# figures mean nothing here, only that each run works). Generous timeouts: TCG on a shared host.
for w in idle http oltp; do
    step "bench run microvm $w"
    bench run --backend microvm --workload "$w" --runs 2 --warmup 0 --ready-timeout 300s \
        --finish-timeout 600s --json "$out/$w.json" > "$out/$w.log" 2>&1
    echo $? > "$out/$w.rc"
done

# The network path of both VMs: each guest serves http-outside on its eth0 (virtio-net on a tap
# bridged into the instance's namespace), wrk drives it from the client namespace.
step "bench compare microvm,qemu http-outside"
bench compare --backends microvm,qemu --workloads http-outside --runs 1 --warmup 0 --ready-timeout 300s \
    --no-report --out "$out/outside" > "$out/outside.log" 2>&1
echo $? > "$out/outside.rc"

# The oltp guest through the VMM alone, with a scratch disk this script keeps: its durable writes
# must be on that disk after the guest reset (the next mount would replay the journal: e2fsck does).
# Two vCPUs and 192 MiB, no `quiet`: the console shows what the guest kernel saw.
step "cvbench-vmm oltp with a kept scratch disk"
# At this point bench has built exactly one image disk (the default image with guest init).
ls /var/cache/cvbench/disks/*.ext4 | grep -v '/scratch-' > "$out/image-disks"
image=$(head -1 "$out/image-disks")
template=$(ls /var/cache/cvbench/disks/scratch-*.ext4 | head -1)
echo "image=$image template=$template" > "$out/vmm-oltp.files"
# busybox cp cannot keep holes: a fresh sparse file formatted as the template is (mke2fs defaults).
rm -f /tmp/scratch.ext4
truncate -s 256M /tmp/scratch.ext4
mkfs.ext4 -q -F -L cvbench-scratch -E assume_storage_prezeroed=1,nodiscard /tmp/scratch.ext4 > "$out/mkfs.log" 2>&1
cvbench-vmm --kernel "$(ls /var/cache/cvbench/kernel/*/vmlinux | head -1)" --memory-mib 192 --vcpus 2 \
    --disk-ro "$image" --disk /tmp/scratch.ext4 \
    --cmdline "root=/dev/vda ro rootfstype=ext4 init=/cvbench/init -- oltp --dir /var/lib/cvbench --rows 500 --transactions 50" \
    > "$out/vmm-oltp.console" 2> "$out/vmm-oltp.events"
echo $? > "$out/vmm-oltp.rc"
e2fsck -fy /tmp/scratch.ext4 > "$out/fsck.log" 2>&1
echo $? > "$out/fsck.rc"
debugfs -R "stat /upper/var/lib/cvbench/sbtest.db" /tmp/scratch.ext4 > "$out/db.stat" 2>&1
debugfs -R "dump /upper/var/lib/cvbench/sbtest.db /tmp/sbtest.db" /tmp/scratch.ext4 > /dev/null 2>&1
head -c 16 /tmp/sbtest.db > "$out/db.head" 2>/dev/null
rm -f /tmp/scratch.ext4 /tmp/sbtest.db

# A guest kernel that panics (no root disk) must end in a reset, not hang.
step "cvbench-vmm with no root disk (kernel panic)"
cvbench-vmm --kernel "$(ls /var/cache/cvbench/kernel/*/vmlinux | head -1)" --memory-mib 128 \
    --cmdline "root=/dev/vda rootfstype=ext4 init=/cvbench/init -- idle" \
    > "$out/vmm-panic.console" 2> "$out/vmm-panic.events"
echo $? > "$out/vmm-panic.rc"

# An image without its workload is refused before any VM starts (rootfs::exec_problem in prepare).
step "bench run microvm on an empty image"
mkdir -p /tmp/empty-image
bench run --backend microvm --workload idle --runs 1 --warmup 0 --ready-timeout 300s \
    --image /tmp/empty-image > "$out/empty.log" 2>&1
echo $? > "$out/empty.rc"

# A guest whose workload starts and dies before READY (busybox-static as cvbench-workload: "applet
# not found", exit 127): bench fails the run with guest init's report of that exit in its error.
step "bench run microvm with a workload that exits before READY"
mkdir -p /tmp/broken-image/bin
cp /bin/busybox /tmp/broken-image/bin/cvbench-workload
bench run --backend microvm --workload idle --runs 1 --warmup 0 --ready-timeout 300s \
    --image /tmp/broken-image > "$out/broken.log" 2>&1
echo $? > "$out/broken.rc"

# The hardware-KVM-gated test binaries the host test copied in (stripped), run so that they execute
# rather than skip. They find the cvbench binaries through CVBENCH_BIN_DIR.
if [ -d /job/tests ]; then
    for t in /job/tests/*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        step "test binary $name"
        filter=""
        [ -f "/job/tests-filter/$name" ] && filter=$(cat "/job/tests-filter/$name")
        # shellcheck disable=SC2086
        CVBENCH_BIN_DIR=/opt/cvbench/bin "$t" --test-threads=1 --nocapture $filter > "$out/test-$name.log" 2>&1
        echo $? > "$out/test-$name.rc"
    done
fi

# Nothing of cvbench may be left in L1.
step "bench cleanup"
bench cleanup > "$out/cleanup.log" 2>&1
echo $? > "$out/cleanup.rc"
ls -A /run/cvbench/vms 2>/dev/null > "$out/run-left"
ps -o pid,comm 2>/dev/null | grep -E 'cvbench-|qemu' > "$out/procs-left"
grep cvbench /proc/self/mountinfo > "$out/mounts-left"
# (iproute2's ip: busybox sh would run its own applet for a bare `ip`.)
{ /usr/sbin/ip netns list; /usr/sbin/ip -o link show | grep cvbench; } > "$out/net-left" 2>&1
step "done"
exit 0
