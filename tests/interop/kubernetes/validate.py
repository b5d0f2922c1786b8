"""Validate deploy/kubernetes/ offline, strictly (unknown fields are errors).

- Kubernetes kinds (Deployment, StatefulSet, Service, ConfigMap, Namespace) against the API's
  JSON schemas shipped in the PyPI package kubernetes-validate (its `-strict` variant);
- the Prometheus Operator's PodMonitor, ServiceMonitor and Probe against the models generated
  from its CRDs (PyPI: cloudcoil.models.prometheus_operator): a document must validate, and no key
  of it may be one the model does not know (pydantic would silently drop it);
- kustomization.yaml lists every manifest file and only existing ones;
- each ConfigMap's scenario files are written to OUT_DIR for `sonde check`.

Usage: validate.py MANIFEST_DIR OUT_DIR   (exit 0 valid, 1 invalid; prints every problem)
"""

import pathlib
import sys

import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as promop

KUBERNETES_VERSION = "1.30.0"  # the oldest still supported by the upstream project
OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): promop.PodMonitor,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): promop.ServiceMonitor,
    ("monitoring.coreos.com/v1", "Probe"): promop.Probe,
}


def unknown_keys(given, kept, path="$"):
    """Keys present in `given` but missing from the model's dump `kept`: fields it ignored."""
    out = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            if k not in kept:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, kept[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out += unknown_keys(g, k, f"{path}[{i}]")
    return out


def check_operator(doc, cls):
    try:
        obj = cls.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError: every field error, with its location
        return [str(e)]
    kept = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"unknown field {p}" for p in unknown_keys(doc, kept)]


def check_kubernetes(doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path)
        return [f"{where}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}: {e}"]


def main(manifest_dir, out_dir):
    root = pathlib.Path(manifest_dir)
    out = pathlib.Path(out_dir)
    problems = []
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    files = sorted(p for p in root.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in sorted(listed - {p.name for p in files}):
        problems.append(f"kustomization.yaml: resource {name} does not exist")
    for p in files:
        if p.name not in listed:
            problems.append(f"kustomization.yaml: {p.name} is not in resources")
    checked = 0
    for p in files:
        for i, doc in enumerate(yaml.safe_load_all(p.read_text())):
            if doc is None:
                continue
            what = f"{p.name} document {i + 1} ({doc.get('kind')} {doc.get('metadata', {}).get('name')})"
            cls = OPERATOR_KINDS.get((doc.get("apiVersion"), doc.get("kind")))
            errs = check_operator(doc, cls) if cls else check_kubernetes(doc)
            problems += [f"{what}: {e}" for e in errs]
            checked += 1
            if doc.get("kind") == "ConfigMap":
                for key, text in doc.get("data", {}).items():
                    if key.endswith((".yaml", ".yml")):
                        folder = out / doc["metadata"]["name"]
                        folder.mkdir(parents=True, exist_ok=True)
                        (folder / key).write_text(text)
    for line in problems:
        print(f"INVALID {root}/{line}")
    print(f"kubernetes: {checked} documents in {len(files)} files checked, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
