#!/usr/bin/env bash
# deploy/kubernetes/, checked offline: every manifest against the Kubernetes API's JSON schemas
# (PyPI kubernetes-validate, strict: unknown fields are errors) and the Prometheus Operator's
# PodMonitor/Probe against models generated from its CRDs (PyPI cloudcoil.models.prometheus_operator);
# the validator must also reject a broken copy (so it can fail); the ConfigMap's scenario files
# pass `sonde check`; `kubectl kustomize` builds the kustomization where kubectl is installed.
# Downloads only from PyPI (pinned versions, into target/interop/kubernetes-venv, reused).
# Called by run.sh; by hand: bash tests/interop/kubernetes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
manifests=deploy/kubernetes
venv=${CARGO_TARGET_DIR:-$PWD/target}/interop/kubernetes-venv
pins=(kubernetes-validate==1.37.0 cloudcoil.models.prometheus_operator==0.80.1.0 PyYAML==6.0.3)
work=$(mktemp -d "${TMPDIR:-/tmp}/sonde-kubernetes.XXXXXX")
trap 'rc=$?; rm -rf "$work"; echo "kubernetes: finished in $(($(date +%s) - started)) s (exit $rc)"' EXIT
fail() { echo "kubernetes: FAIL: $*" >&2; exit 1; }

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || fail "python3 with venv is needed: apt-get install python3-venv"
  echo "kubernetes: installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
fi
if [[ ! -f $venv/pins ]] || [[ $(cat "$venv/pins") != "${pins[*]}" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --progress-bar off "${pins[@]}" > "$work/pip.log" 2>&1 ||
    { tail -n 20 "$work/pip.log"; fail "pip install ${pins[*]} failed (above)"; }
  echo "${pins[*]}" > "$venv/pins"
fi
py=$venv/bin/python

"$py" tests/interop/kubernetes/validate.py "$manifests" "$work/scenarios" || fail "invalid manifests (above)"

# The validator must be able to fail: a misspelt field in each kind of file is caught.
cp -r "$manifests" "$work/broken"
sed -i 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/' "$work/broken/agent-deployment.yaml"
sed -i 's/podMetricsEndpoints:/podMetricEndpoints:/' "$work/broken/podmonitor.yaml"
sed -i 's/^  prober:/  probers:/' "$work/broken/probe.yaml"
"$py" tests/interop/kubernetes/validate.py "$work/broken" "$work/unused" > "$work/broken.out" || true
for want in readOnlyRootFileSystem podMetricEndpoints probers; do
  grep -q "$want" "$work/broken.out" || { cat "$work/broken.out"; fail "the validator missed the misspelt $want"; }
done
echo "kubernetes: the validator rejects misspelt fields (Deployment, PodMonitor, Probe)"

cargo build -q --bin sonde
for d in "$work"/scenarios/*/; do
  ./target/debug/sonde check "$d" || fail "the scenario files of ConfigMap $(basename "$d") are invalid"
done

if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$manifests" > "$work/built.yaml" || fail "kubectl kustomize $manifests failed"
  grep -q 'image: registry.example.com/sonde:0.1.0' "$work/built.yaml" || fail "kustomize did not set the image"
  echo "kubernetes: kubectl kustomize builds $(grep -c '^kind:' "$work/built.yaml") resources"
else
  echo "kubernetes: kubectl not installed; kustomization checked by the validator only"
fi
