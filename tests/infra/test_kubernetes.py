"""Verify, kubernetes layer: what the Kubernetes stage promises.

Per node (testinfra, ansible:// backend): the kubelet runs, the node is Ready under its
inventory name with its lab address, CoreDNS answers from the node. Cluster-wide (kubectl on
the controller with the lab's kubeconfig): the nodes are exactly the inventory's, the control
plane's pods run, and one probe pod per node reaches a pod on another node and a Service IP.
Expected values come from the inventory, never from here.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from labkube import host_vars, kubectl, node_command, read_inventory

from clusterlab import artifacts

PROBE_NS = "clusterlab-verify"
# agnhost: netexec serves HTTP; connect opens a TCP connection. Offline bundles list it too.
PROBE_IMAGE = artifacts.PROBE_IMAGE.split("/", 1)[1]  # without its registry
PROBE_PORT = 8080
CONTROL_PLANE_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

# A DNS query for an A record, built with the standard library on the node (no dig needed).
DNS_QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(q, (server, 53))
r = s.recv(4096); n = struct.unpack(">H", r[6:8])[0]; i = len(q)
for _ in range(n):
    i += 2 if r[i] & 0xC0 == 0xC0 else r.index(b"\0", i) + 1 - i
    t, _c, _ttl, ln = struct.unpack(">HHIH", r[i:i + 10]); i += 10
    if t == 1: print(socket.inet_ntoa(r[i:i + 4]))
    i += ln
"""


@pytest.fixture(scope="module")
def lab(request) -> dict:
    """The inventory the suite runs against (all.vars, hosts, groups)."""
    return read_inventory(request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def nodes(lab) -> dict[str, dict]:
    return {
        n["metadata"]["name"]: n
        for n in json.loads(kubectl(lab, "get", "nodes", "-o", "json"))["items"]
    }


@pytest.fixture
def hv(host):
    return host_vars(host)


def test_kubelet_active(host):
    assert host.service("kubelet").is_running
    assert host.service("kubelet").is_enabled


def test_node_ready_with_its_lab_address(hv, nodes):
    name = hv["inventory_hostname"]
    assert name in nodes, f"no node {name} in the cluster (nodes: {', '.join(nodes)})"
    status = nodes[name]["status"]
    ready = {c["type"]: c["status"] for c in status["conditions"]}.get("Ready")
    assert ready == "True", f"{name} is not Ready: {status['conditions']}"
    internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
    assert internal == [hv["ip"]], f"{name}: InternalIP {internal}, lab address {hv['ip']}"


def test_coredns_answers_from_the_node(host, lab):
    dns_ip = kubectl(
        lab, "-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"
    )
    api_ip = kubectl(lab, "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
    name = "kubernetes.default.svc.cluster.local"
    python = node_command(host, "python3", "python")  # Flatcar: PyPy as /opt/bin/python
    out = host.run(f"{python} -c '{DNS_QUERY}' {dns_ip} {name}")
    assert out.rc == 0, f"no DNS answer from {dns_ip}: {out.stderr}"
    assert out.stdout.split() == [api_ip], f"{name} -> {out.stdout.split()}, expected {api_ip}"


def test_nodes_are_the_inventory(lab, nodes):
    assert sorted(nodes) == lab["hosts"]


def test_control_plane_pods_running(lab):
    pods = json.loads(kubectl(lab, "-n", "kube-system", "get", "pods", "-o", "json"))["items"]
    phase = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
    for cp in lab["groups"]["kube_control_plane"]:
        for component in CONTROL_PLANE_PODS:
            assert phase.get(f"{component}-{cp}") == "Running", (
                f"{component}-{cp}: {phase.get(f'{component}-{cp}')}"
            )


def probe_manifests(image: str) -> str:
    labels = {"app": "clusterlab-probe"}
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NS}},
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "probe", "namespace": PROBE_NS},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [
                            {
                                "name": "netexec",
                                "image": image,
                                "args": ["netexec", f"--http-port={PROBE_PORT}"],
                                "ports": [{"containerPort": PROBE_PORT}],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "probe", "namespace": PROBE_NS},
            "spec": {"selector": labels, "ports": [{"port": PROBE_PORT}]},
        },
    ]
    return yaml.safe_dump_all(docs)


@pytest.fixture(scope="module")
def probes(lab):
    registry = lab["vars"].get("artifacts_image_registry") or "registry.k8s.io"
    kubectl(lab, "apply", "-f", "-", stdin=probe_manifests(f"{registry}/{PROBE_IMAGE}"))
    try:
        kubectl(lab, "-n", PROBE_NS, "rollout", "status", "daemonset/probe", "--timeout=300s")
        deadline = time.monotonic() + 60
        while True:
            pods = json.loads(kubectl(lab, "-n", PROBE_NS, "get", "pods", "-o", "json"))["items"]
            if len(pods) == len(lab["hosts"]) and all(p["status"].get("podIP") for p in pods):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{len(pods)} probe pods for {len(lab['hosts'])} nodes after 60 s")
            time.sleep(2)
        yield {p["spec"]["nodeName"]: (p["metadata"]["name"], p["status"]["podIP"]) for p in pods}
    finally:
        kubectl(lab, "delete", "namespace", PROBE_NS, "--wait=false", check=False)


def test_pods_reach_a_pod_on_another_node_and_a_service(lab, probes):
    service_ip = kubectl(
        lab, "-n", PROBE_NS, "get", "service", "probe", "-o", "jsonpath={.spec.clusterIP}"
    )
    order = sorted(probes)
    failures = []
    for i, node in enumerate(order):
        pod, _ = probes[node]
        other = order[(i + 1) % len(order)]
        targets = [f"{service_ip}:{PROBE_PORT}"]
        if other != node:
            targets.append(f"{probes[other][1]}:{PROBE_PORT}")
        for target in targets:
            res = subprocess.run(
                [
                    lab["vars"]["clusterlab_kubectl"],
                    "--kubeconfig",
                    lab["vars"]["clusterlab_kubeconfig"],
                    "-n",
                    PROBE_NS,
                    "exec",
                    pod,
                    "--",
                    "/agnhost",
                    "connect",
                    target,
                    "--timeout=5s",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            if res.returncode != 0:
                failures.append(
                    f"{pod} on {node} -> {target}: {res.stderr.strip() or res.stdout.strip()}"
                )
    assert not failures, "\n".join(failures)
