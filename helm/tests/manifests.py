"""Checks of rendered chart manifests, run by scripts/test-chart.sh.

  split RENDERED CORE_OUT CRD_OUT   core kinds (for kubernetes-validate) and CRD kinds apart
  crds FILE...                      validates ScaledObject, ServiceMonitor and PrometheusRule
                                    against their CRD schemas (cloudcoil models of the KEDA and
                                    prometheus-operator CRDs) with unknown fields refused
  hardening FILE...                 every Ferry and etcd container: non-root, read-only root,
                                    no capabilities, no privilege escalation, seccomp RuntimeDefault
"""
import sys

import jsonschema
import yaml

CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def split(rendered, core_out, crd_out):
    core, crds = [], []
    for d in docs(rendered):
        (crds if d["kind"] in CRD_KINDS else core).append(d)
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(crd_out, "w") as f:
        yaml.safe_dump_all(crds, f, sort_keys=False)
    print(f"{len(core)} core objects, {len(crds)} CRD objects")


def strict(schema):
    """Refuses unknown fields wherever the schema lists an object's properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema


def crd_validators():
    from cloudcoil.models.keda.v1alpha1 import ScaledObject
    from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

    out = {}
    for model in (ScaledObject, ServiceMonitor, PrometheusRule):
        schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
        out[model.__name__] = jsonschema.Draft202012Validator(schema)
    return out


def crds(paths):
    validators = crd_validators()
    failed = 0
    seen = 0
    for path in paths:
        for d in docs(path):
            v = validators.get(d["kind"])
            if v is None:
                print(f"{path}: no CRD schema for {d['kind']}")
                failed += 1
                continue
            seen += 1
            for e in v.iter_errors(d):
                where = "/".join(str(p) for p in e.absolute_path)
                print(f"{path}: {d['kind']}/{d['metadata']['name']}: {where}: {e.message}")
                failed += 1
    print(f"{seen} CRD objects checked, {failed} problems")
    return 1 if failed else 0


def hardening(paths):
    failed = 0
    for path in paths:
        for d in docs(path):
            if d["kind"] not in ("Deployment", "StatefulSet"):
                continue
            spec = d["spec"]["template"]["spec"]
            name = d["metadata"]["name"]
            pod = spec.get("securityContext", {})
            problems = []
            if spec.get("automountServiceAccountToken") is not False:
                problems.append("service account token mounted")
            if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append("pod seccompProfile is not RuntimeDefault")
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c.get("securityContext", {})
                merged = {**pod, **sc}
                if merged.get("runAsNonRoot") is not True or not merged.get("runAsUser"):
                    problems.append(f"{c['name']}: may run as root")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{c['name']}: root filesystem writable")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{c['name']}: privilege escalation allowed")
                if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                    problems.append(f"{c['name']}: capabilities not all dropped")
                if not c.get("resources", {}).get("requests"):
                    problems.append(f"{c['name']}: no resource requests")
            for p in problems:
                print(f"{path}: {d['kind']}/{name}: {p}")
            failed += len(problems)
    return 1 if failed else 0


def main(argv):
    if argv[:1] == ["split"] and len(argv) == 4:
        split(*argv[1:])
        return 0
    if argv[:1] == ["crds"]:
        return crds(argv[1:])
    if argv[:1] == ["hardening"]:
        return hardening(argv[1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
