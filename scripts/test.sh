#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls exactly this).
# Tests that need root, hardware KVM, a built guest kernel or a package check first and, when they
# cannot run, skip through crates/testkit: they print `skipped: <reason>` and append a record to
# $CVBENCH_SKIP_LOG, summarised (count and reasons) after the suite. $CVBENCH_REQUIRE (set by .ci/run)
# lists the requirement classes this host must provide; a test skipping for one of those fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --packages
# The guest kernel the QEMU guest-artifact test boots: built once (about 4 min on 2 cores), cached
# under /var/cache/cvbench/kernel/<config hash>/, a no-op afterwards.
guest/kernel/build.sh >/dev/null
# Binaries first: tests start the static workload, guest init and VMM from target/.
cargo build --workspace --bins --quiet
# The services image the nginx/mariadb tests run (debootstrap of nginx-light and mariadb-server from
# deb.debian.org: ~500 MiB, about a minute cold). Built once; any cached services image is reused,
# as those tests reuse it (a new workload build changes the image's key, not what the tests need).
# The recipe string is rootfs::services::SERVICES_RECIPE_VERSION.
if ! grep -qs '"recipe": "cvbench-services-v1"' /var/cache/cvbench/images/*/etc/cvbench-image.json; then
    target/x86_64-unknown-linux-gnu/debug/bench image build services \
        || echo "test.sh: the services image could not be built; the services tests will skip" >&2
fi
export CVBENCH_SKIP_LOG="${CVBENCH_SKIP_LOG:-${CARGO_TARGET_DIR:-$PWD/target}/cvbench-skips.tsv}"
: >"$CVBENCH_SKIP_LOG"
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
cargo run --quiet -p testkit --bin cvbench-skips -- "$CVBENCH_SKIP_LOG"
exit "$status"
