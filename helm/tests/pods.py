"""Runs the chart's rendered workloads as pods under podman (scripts/test-pods.sh).

podman 4.3's `kube play` does not start StatefulSets, publishes containerPorts on
the host, rejects `fieldRef: metadata.namespace`, does not expand `$(VAR)` and
ignores gRPC probes. So each rendered Deployment or StatefulSet becomes plain
Pods (NAME-0..N) with everything the kubelet would resolve resolved here, and
nothing else changed: the image, args, env, mounts, user, read-only root and
capabilities are the chart's.

  convert RENDERED SECRETS OUT GATEWAY NAMESPACE REPLICAS_JSON
      writes OUT/<pod>.yaml per pod and OUT/plan.json; RENDERED is `helm
      template` output, SECRETS a YAML stream of the Secrets the values name,
      REPLICAS_JSON the pods per workload, e.g. {"ferry-worker": 3}
  network POD        the `--network` option of `podman kube play` for POD
                     (its IP and a DNS alias per Service that selects it)
  check-config POD   compares `podman inspect` of POD's containers with the plan
  probe POD KIND     runs POD's readiness or liveness probe inside the pod's
                     network namespace (nsenter), as the kubelet would; prints
                     the gRPC health status (SERVING, NOT_SERVING, …)
  grpc-health HOST PORT SERVICE   (used by probe, inside the namespace)
"""
import copy
import json
import os
import re
import subprocess
import sys

import yaml

WORKLOADS = ("Deployment", "StatefulSet")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def expand(text, env):
    """Kubernetes' $(VAR) expansion; $$(VAR) stays literal."""
    return re.sub(
        r"\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$(" if m.group(0) == "$$(" else env.get(m.group(1), m.group(0)),
        text,
    )


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Converter:
    def __init__(self, rendered, secrets, out, gateway, namespace, replicas):
        self.docs = load(rendered)
        self.secrets = {d["metadata"]["name"]: d for d in load(secrets)}
        self.configmaps = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "ConfigMap"}
        self.services = [d for d in self.docs if d["kind"] == "Service"]
        self.out = out
        self.gateway = gateway
        self.namespace = namespace
        self.replicas = replicas
        self.domain = "cluster.local"
        self.next_ip = 10
        self.plan = {"gateway": gateway, "namespace": namespace, "pods": []}

    def ip(self):
        base = self.gateway.rsplit(".", 1)[0]
        self.next_ip += 1
        return f"{base}.{self.next_ip}"

    def secret_value(self, name, key):
        s = self.secrets.get(name)
        if s is None:
            raise SystemExit(f"the chart references Secret {name!r}, which the test does not provide")
        if "stringData" in s and key in s["stringData"]:
            return s["stringData"][key]
        raise SystemExit(f"Secret {name!r} has no key {key!r}")

    def resolve_env(self, c, pod_name, pod_ip):
        env = {}
        for src in c.get("envFrom", []):
            cm = src.get("configMapRef")
            if cm:
                env.update({k: str(v) for k, v in self.configmaps[cm["name"]].get("data", {}).items()})
            elif src.get("secretRef"):
                s = self.secrets[src["secretRef"]["name"]]
                env.update(s.get("stringData", {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                env[e["name"]] = {
                    "metadata.name": pod_name,
                    "metadata.namespace": self.namespace,
                    "status.podIP": pod_ip,
                }[path]
            elif "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                env[e["name"]] = self.secret_value(r["name"], r["key"])
            elif "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                env[e["name"]] = str(self.configmaps[r["name"]]["data"][r["key"]])
            else:
                raise SystemExit(f"unsupported env source {vf}")
        return env

    def volume_dir(self, pod, name):
        d = os.path.join(self.out, "volumes", pod, name)
        os.makedirs(d, exist_ok=True)
        return d

    def host_volume(self, pod, v, run_as):
        """A rendered volume as a hostPath with the same content."""
        name = v["name"]
        d = self.volume_dir(pod, name)
        if "emptyDir" in v:
            os.chmod(d, 0o1777)
        elif "secret" in v:
            s = self.secrets.get(v["secret"]["secretName"])
            if s is None:
                raise SystemExit(f"the chart mounts Secret {v['secret']['secretName']!r}, which the test does not provide")
            for k, val in s.get("stringData", {}).items():
                p = os.path.join(d, k)
                with open(p, "w") as f:
                    f.write(val)
                os.chmod(p, 0o444)
        elif "configMap" in v:
            for k, val in self.configmaps[v["configMap"]["name"]].get("data", {}).items():
                with open(os.path.join(d, k), "w") as f:
                    f.write(str(val))
        elif "persistentVolumeClaim" in v:
            os.chown(d, *run_as)
            os.chmod(d, 0o770)
        else:
            raise SystemExit(f"unsupported volume {v}")
        return {"name": name, "hostPath": {"path": os.path.abspath(d), "type": "Directory"}}

    def aliases(self, pod, labels, subdomain):
        out = []
        for s in self.services:
            svc = s["metadata"]["name"]
            if not selects(s["spec"].get("selector", {}), labels):
                continue
            fq = f"{svc}.{self.namespace}.svc.{self.domain}"
            out += [svc, f"{svc}.{self.namespace}", fq]
            if subdomain == svc:
                out += [f"{pod}.{svc}", f"{pod}.{fq}"]
        return sorted(set(out))

    def pod(self, w, i):
        kind = w["kind"]
        name = f"{w['metadata']['name']}-{i}"
        tpl = copy.deepcopy(w["spec"]["template"])
        spec = tpl["spec"]
        labels = tpl["metadata"].get("labels", {})
        psc = spec.get("securityContext", {})
        run_as = (psc.get("runAsUser", 0), psc.get("fsGroup", psc.get("runAsGroup", 0)))
        ip = self.ip()
        subdomain = w["spec"].get("serviceName") if kind == "StatefulSet" else None
        expected = []
        probes = {}
        for c in spec["containers"]:
            env = self.resolve_env(c, name, ip)
            args = [expand(a, env) for a in c.get("args", [])]
            command = [expand(a, env) for a in c.get("command", [])]
            sc = {**psc, **c.get("securityContext", {})}
            expected.append({
                "container": f"{name}-{c['name']}",
                "image": c["image"],
                "command": command,
                "args": args,
                "env": env,
                "mounts": {m["mountPath"]: bool(m.get("readOnly")) for m in c.get("volumeMounts", [])},
                "user": f"{sc.get('runAsUser')}:{sc.get('runAsGroup')}" if sc.get("runAsGroup") else str(sc.get("runAsUser")),
                "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                "capDropAll": sc.get("capabilities", {}).get("drop") == ["ALL"],
                "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False,
            })
            for kind_ in ("readinessProbe", "livenessProbe"):
                if kind_ in c:
                    probes[kind_.replace("Probe", "")] = c[kind_]
            # what the kubelet resolves, resolved; ports and probes left to the test
            c["env"] = [{"name": k, "value": v} for k, v in env.items()]
            c.pop("envFrom", None)
            c["args"] = args
            if command:
                c["command"] = command
            for k in ("ports", "readinessProbe", "livenessProbe", "startupProbe"):
                c.pop(k, None)
        vols = [self.host_volume(name, v, run_as) for v in spec.get("volumes", [])]
        for claim in w["spec"].get("volumeClaimTemplates", []):
            vols.append(self.host_volume(name, {"name": claim["metadata"]["name"], "persistentVolumeClaim": {}}, run_as))
        spec["volumes"] = vols
        for k in ("affinity", "tolerations", "nodeSelector", "serviceAccountName",
                  "automountServiceAccountToken", "enableServiceLinks", "imagePullSecrets"):
            spec.pop(k, None)
        spec["hostname"] = name
        if subdomain:
            spec["subdomain"] = subdomain
        spec["restartPolicy"] = "Never"
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {"nameservers": [self.gateway],
                             "searches": [f"{self.namespace}.svc.{self.domain}", f"svc.{self.domain}"]}
        # podman 4.3 refuses annotation values over 63 characters (Kubernetes has
        # no such limit): the config checksum (64 hex digits) stays out
        annotations = {k: v for k, v in tpl["metadata"].get("annotations", {}).items() if len(str(v)) <= 63}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": self.namespace, "labels": labels,
                            "annotations": annotations},
               "spec": spec}
        path = os.path.join(self.out, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(pod, f, sort_keys=False)
        aliases = self.aliases(name, labels, subdomain)
        self.plan["pods"].append({
            "name": name, "workload": w["metadata"]["name"],
            "component": labels.get("app.kubernetes.io/component"), "file": path, "ip": ip,
            "network": ",".join([f"ip={ip}"] + [f"alias={a}" for a in aliases]),
            "containers": expected, "probes": probes,
        })

    def run(self):
        for w in self.docs:
            if w["kind"] not in WORKLOADS:
                continue
            n = self.replicas.get(w["metadata"]["name"], w["spec"].get("replicas", 1))
            for i in range(n):
                self.pod(w, i)
        with open(os.path.join(self.out, "plan.json"), "w") as f:
            json.dump(self.plan, f, indent=2)
        for p in self.plan["pods"]:
            print(p["name"], p["component"], p["ip"])


def plan_of(pod):
    plan = json.load(open(os.environ["FERRY_POD_PLAN"]))
    for p in plan["pods"]:
        if p["name"] == pod:
            return plan, p
    raise SystemExit(f"no pod {pod} in the plan")


def inspect(container):
    out = subprocess.run(["podman", "inspect", container], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]


def check_config(pod):
    _, p = plan_of(pod)
    problems = []
    for want in p["containers"]:
        got = inspect(want["container"])
        cfg, host = got["Config"], got["HostConfig"]
        if cfg["Image"].split("/")[-1] != want["image"].split("/")[-1] and got.get("ImageName") != want["image"]:
            problems.append(f"image {got.get('ImageName')} != {want['image']}")
        # the image's entrypoint is ferry; args follow it (a command replaces it)
        if want["args"] and got["Args"][-len(want["args"]):] != want["args"]:
            problems.append(f"args {got['Args']} != {want['args']}")
        if want["command"] and got["Path"] != want["command"][0]:
            problems.append(f"command {got['Path']} != {want['command'][0]}")
        env = dict(e.split("=", 1) for e in cfg.get("Env", []))
        for k, v in want["env"].items():
            if env.get(k) != v:
                problems.append(f"env {k}={env.get(k)!r}, chart says {v!r}")
        mounts = {m["Destination"]: not m.get("RW", True) for m in got.get("Mounts", [])}
        for path, ro in want["mounts"].items():
            if path not in mounts:
                problems.append(f"no mount at {path}")
            elif ro and not mounts[path]:
                problems.append(f"mount {path} is writable, chart says read-only")
        if cfg.get("User") != want["user"]:
            problems.append(f"user {cfg.get('User')!r} != {want['user']!r}")
        if want["readOnlyRootFilesystem"] and not host.get("ReadonlyRootfs"):
            problems.append("root filesystem is writable")
        if want["capDropAll"] and len(host.get("CapDrop") or []) < 10:
            problems.append(f"capabilities not dropped: {host.get('CapDrop')}")
        if want["capDropAll"] and (host.get("CapAdd") or []):
            problems.append(f"capabilities added: {host.get('CapAdd')}")
        if want["noNewPrivileges"] and "no-new-privileges" not in (host.get("SecurityOpt") or []):
            problems.append("no-new-privileges not set")
    for pr in problems:
        print(f"{pod}: {pr}")
    if not problems:
        print(f"{pod}: image, args, env ({sum(len(c['env']) for c in p['containers'])} variables), mounts, user, "
              "read-only root, capabilities and no-new-privileges are the chart's")
    return 1 if problems else 0


def probe(pod, kind):
    _, p = plan_of(pod)
    pr = p["probes"].get(kind)
    if pr is None:
        print("NONE")
        return 0
    container = p["containers"][0]["container"]
    pid = str(inspect(container)["State"]["Pid"])
    if "grpc" in pr:
        cmd = ["nsenter", "-t", pid, "-n", sys.executable, __file__, "grpc-health", "127.0.0.1",
               str(pr["grpc"]["port"]), pr["grpc"].get("service", "")]
    elif "httpGet" in pr:
        port = pr["httpGet"]["port"]
        port = {"client": 2379, "peer": 2380}.get(port, port)
        cmd = ["nsenter", "-t", pid, "-n", "curl", "-sf", "-m", "3",
               f"http://127.0.0.1:{port}{pr['httpGet'].get('path', '/')}"]
    elif "tcpSocket" in pr:
        port = {"client": 2379, "peer": 2380}.get(pr["tcpSocket"]["port"], pr["tcpSocket"]["port"])
        cmd = ["nsenter", "-t", pid, "-n", sys.executable, "-c",
               f"import socket; socket.create_connection(('127.0.0.1', {port}), 3); print('OPEN')"]
    else:
        raise SystemExit(f"unsupported probe {pr}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout.strip() if r.returncode == 0 else f"FAILED {r.stderr.strip()[-200:]}")
    return 0


def grpc_health(host, port, service):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
            print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
        except grpc.RpcError as e:
            print(f"ERROR {e.code().name}")
    return 0


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "convert" and len(args) == 6:
        rendered, secrets, out, gateway, namespace, replicas = args
        os.makedirs(out, exist_ok=True)
        Converter(rendered, secrets, out, gateway, namespace, json.loads(replicas)).run()
        return 0
    if cmd == "network" and len(args) == 1:
        print(plan_of(args[0])[1]["network"])
        return 0
    if cmd == "check-config" and len(args) == 1:
        return check_config(args[0])
    if cmd == "probe" and len(args) == 2:
        return probe(*args)
    if cmd == "grpc-health" and len(args) == 3:
        return grpc_health(args[0], int(args[1]), args[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
