#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls exactly this).
# Tests that need root, hardware KVM, a built guest kernel or a package check first and print
# `skipped: <reason>` when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --packages
# The guest kernel the QEMU guest-artifact test boots: built once (about 4 min on 2 cores), cached
# under /var/cache/cvbench/kernel/<config hash>/, a no-op afterwards.
guest/kernel/build.sh >/dev/null
# Binaries first: tests start the static workload, guest init and VMM from target/.
cargo build --workspace --bins --quiet
cargo nextest run --workspace --no-fail-fast "$@"
