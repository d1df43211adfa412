#!/usr/bin/env bash
# Runs the benchmark on every KVM node of the current kubectl context and merges the results:
#   scripts/k8s-run.sh [OUT_DIR]         (default cvbench-fleet)
# Applies deploy/k8s (namespace + DaemonSet), waits for the rollout (each pod's init container runs
# `bench` and exits 0 with any failure recorded in results.json), copies every pod's results.json,
# runs `bench merge` with one host section per node, and deletes the namespace (also on failure).
# Needs: kubectl, the cvbench image reachable by the nodes (see deploy/Dockerfile), NFD labels.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-cvbench-fleet}"
ns=cvbench
timeout="${CVBENCH_K8S_TIMEOUT:-30m}"
bench="${BENCH:-target/x86_64-unknown-linux-gnu/release/bench}"

cleanup() { kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null || true; }
trap cleanup EXIT

kubectl apply -k deploy/k8s
kubectl -n "$ns" rollout status daemonset/cvbench --timeout="$timeout"

legs="$(mktemp -d)"
trap 'cleanup; rm -rf "$legs"' EXIT
pods="$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=cvbench -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{"\n"}{end}')"
if [ -z "$pods" ]; then
    echo "k8s-run: no cvbench pod was scheduled (no node with /dev/kvm and the NFD VMX/SVM label?)" >&2
    exit 1
fi
inputs=()
while read -r pod node; do
    [ -n "$pod" ] || continue
    kubectl -n "$ns" exec "$pod" -c holder -- cat /results/results.json >"$legs/$node.json"
    inputs+=("$legs/$node.json")
    echo "k8s-run: $node: results copied from $pod"
done <<<"$pods"

"$bench" merge "${inputs[@]}" --out "$out" --by node
