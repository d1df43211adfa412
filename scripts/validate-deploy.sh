#!/usr/bin/env bash
# Validates the fleet files offline (no cluster, no network): deploy/k8s against the Kubernetes
# OpenAPI schemas (kubernetes-validate --strict: unknown fields fail), the rendered golden set the
# Rust test keeps, and .github/workflows against the GitHub workflow schema (check-jsonschema's
# bundled copy). kubectl is optional: when present, its `kustomize` rendering is validated too.
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_version="${CVBENCH_K8S_VERSION:-1.30.0}"
kubernetes-validate --strict --quiet -k "$k8s_version" \
    deploy/k8s/namespace.yaml deploy/k8s/daemonset.yaml crates/cli/tests/golden/k8s-rendered.yaml
if command -v kubectl >/dev/null 2>&1; then
    rendered="$(mktemp --suffix=.yaml)"
    trap 'rm -f "$rendered"' EXIT
    kubectl kustomize deploy/k8s >"$rendered"
    kubernetes-validate --strict --quiet -k "$k8s_version" "$rendered"
else
    echo "validate-deploy: kubectl not installed, kustomize rendering not checked (the Rust golden test covers it)"
fi
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
bash -n scripts/k8s-run.sh
echo "validate-deploy: ok"
