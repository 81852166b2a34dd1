#!/usr/bin/python3
"""Checks deploy/kubernetes/ without a cluster (test/host/k8s.sh).

  k8scheck.py schema DIR       every document of DIR/*.yaml is an object of
                               Kubernetes' API as Debian's python3-kubernetes
                               models it: read into its model and written
                               back, it comes out unchanged (an unknown or
                               misspelt field is dropped, a wrong type is
                               converted, a missing required one refused)
  k8scheck.py agents DIR UNITS the DaemonSets have what the agents need
                               (docs/kubernetes.md), and their command lines
                               start with the systemd units' ExecStart (UNITS:
                               the systemd/ source dir)
  k8scheck.py conf DIR NAME    print the ConfigMap's file NAME
  k8scheck.py args DIR AGENT IP  print the DaemonSet AGENT's container
                               arguments, one a line, on a node of address IP

Prints one line per problem and exits 1 if there is any."""

import glob
import json
import os
import shlex
import sys

import yaml

# The kinds the manifests use, and their model in the Python client.
MODELS = {("v1", "Namespace"): "V1Namespace", ("v1", "ConfigMap"): "V1ConfigMap",
          ("apps/v1", "DaemonSet"): "V1DaemonSet"}


def documents(d):
    for path in sorted(glob.glob(os.path.join(d, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    yield os.path.basename(path), doc


def schema(d):
    from kubernetes.client import ApiClient

    client = ApiClient()

    class Response:  # what ApiClient.deserialize reads
        def __init__(self, doc):
            self.data = json.dumps(doc)

    problems = []
    for name, doc in documents(d):
        model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
        if model is None:
            problems.append(f"{name}: {doc.get('apiVersion')} {doc.get('kind')}: no model checked here")
            continue
        try:
            back = client.sanitize_for_serialization(client.deserialize(Response(doc), model))
        except (ValueError, TypeError) as e:
            problems.append(f"{name}: {model}: {e}")
            continue
        if back != doc:
            problems.append(f"{name}: {model}: changed by a round trip through the model: {diff(doc, back)}")
    return problems


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return f"{path}.{k} is not a field"
            if a[k] != b[k]:
                return diff(a[k], b[k], f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return diff(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} became {b!r}"


def exec_args(units, agent):
    with open(os.path.join(units, agent + ".service.in")) as f:
        for line in f:
            if line.startswith("ExecStart="):
                return shlex.split(line[len("ExecStart="):])[1:]
    return None


def agents(d, units):
    docs = {doc["metadata"]["name"]: doc for _, doc in documents(d)}
    problems = []
    for agent in ("rdmig-source", "rdmig-dest"):
        ds = docs.get(agent)
        if ds is None or ds.get("kind") != "DaemonSet":
            problems.append(f"{agent}: no DaemonSet")
            continue
        spec = ds["spec"]["template"]["spec"]
        c = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}

        def vol(path):
            return vols.get(mounts.get(path), {})

        def want(ok, what):
            if not ok:
                problems.append(f"{agent}: {what}")

        want(spec.get("hostNetwork") is True, "hostNetwork: true (the RDMA addresses are the node's)")
        want(spec.get("hostPID") is True, "hostPID: true (criu sees the host's pids)")
        want(c.get("securityContext", {}).get("privileged") is True, "privileged (criu, /dev/infiniband)")
        want(vol("/dev/infiniband").get("hostPath", {}).get("path") == "/dev/infiniband",
             "/dev/infiniband: the host's, as a hostPath")
        want(vol("/run/rdmig").get("hostPath", {}).get("path") == "/run/rdmig",
             "/run/rdmig (the API socket): a hostPath")
        items = [i["key"] for i in vol("/etc/rdmig").get("configMap", {}).get("items", [])]
        want(vol("/etc/rdmig").get("configMap", {}).get("name") == "rdmig-config" and items == [agent + ".conf"],
             f"/etc/rdmig: the ConfigMap rdmig-config's {agent}.conf")
        want(vol("/etc/rdmig/tls").get("secret", {}).get("secretName") == "rdmig-tls",
             "/etc/rdmig/tls: the Secret rdmig-tls")
        if agent == "rdmig-source":
            want(vol("/var/lib/rdmig").get("hostPath", {}).get("path") == "/var/lib/rdmig",
                 "/var/lib/rdmig (the checkpoints, the records): a hostPath")
        cmd = " ".join(c.get("command", []))
        want("ulimit -l unlimited" in cmd and f"exec /usr/sbin/{agent} " in cmd,
             "the command raises RLIMIT_MEMLOCK, then execs the installed agent")
        unit = exec_args(units, agent)
        want(unit is not None and c.get("args", [])[:len(unit)] == unit,
             f"the args start with {agent}.service's ExecStart arguments {unit}")
        want(ds["spec"].get("updateStrategy", {}).get("type") == "OnDelete",
             "updateStrategy OnDelete (no rolling replacement mid-migration)")
        want(spec.get("terminationGracePeriodSeconds", 0) >= 600,
             "terminationGracePeriodSeconds >= 600 (the stop waits for the migrations)")
        probe = c.get("readinessProbe", {}).get("exec", {}).get("command", [])
        want(probe[:1] == ["/usr/bin/rdmigctl"] and "health" in probe, "readiness: rdmigctl health")
    return problems


def conf(d, name):
    for _, doc in documents(d):
        if doc.get("kind") == "ConfigMap" and name in doc.get("data", {}):
            sys.stdout.write(doc["data"][name])
            return []
    return [f"no ConfigMap has {name}"]


def args(d, agent, ip):
    for _, doc in documents(d):
        if doc.get("kind") == "DaemonSet" and doc["metadata"]["name"] == agent:
            for a in doc["spec"]["template"]["spec"]["containers"][0].get("args", []):
                print(a.replace("$(NODE_IP)", ip))
            return []
    return [f"no DaemonSet {agent}"]


def main(argv):
    if argv[:1] == ["schema"] and len(argv) == 2:
        problems = schema(argv[1])
    elif argv[:1] == ["agents"] and len(argv) == 3:
        problems = agents(argv[1], argv[2])
    elif argv[:1] == ["args"] and len(argv) == 4:
        problems = args(argv[1], argv[2], argv[3])
    elif argv[:1] == ["conf"] and len(argv) == 3:
        problems = conf(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


sys.exit(main(sys.argv[1:]))
