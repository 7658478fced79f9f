"""access-modes: ReadWriteOnce locks a volume to one node, ReadWriteMany shares it."""

from __future__ import annotations

from clusterlab.demos.base import Context, Demo, Result, Step
from clusterlab.demos.kubeout import table

NS = "demo-access-modes"


def two_nodes(ctx: Context) -> list[str]:
    """The two nodes the pods are pinned to: workers first, in inventory order. A one-node
    lab gets its node twice (the manifests still render; the demo stops before them)."""
    order = [*ctx.groups.get("kube_node", []), *ctx.hosts]
    nodes = list(dict.fromkeys(order))
    return (nodes * 2)[:2] if len(nodes) < 2 else nodes[:2]


def on_two_nodes(r: Result, ctx: Context) -> str | None:
    rows = {row["NAME"]: row for row in table(r.stdout)}
    want = dict(zip(("writer-a", "writer-b"), two_nodes(ctx), strict=True))
    for pod, node in want.items():
        row = rows.get(pod)
        if row is None or row["STATUS"] != "Running":
            return f"{pod} is not Running ({row['STATUS'] if row else 'missing'})"
        if row["NODE"] != node:
            return f"{pod} runs on {row['NODE']}, not {node}"
    return None


def both_writers(r: Result, ctx: Context) -> str | None:
    a, b = two_nodes(ctx)
    seen = {
        (w, n)
        for line in r.stdout.splitlines()
        if len(parts := line.split()) >= 3 and parts[1] == "on"
        for w, n in [(parts[0], parts[2])]
    }
    missing = [f"{w} on {n}" for w, n in (("writer-a", a), ("writer-b", b)) if (w, n) not in seen]
    return f"no line from {', '.join(missing)} in the shared file" if missing else None


def multi_attach(r: Result, ctx: Context) -> str | None:
    for row in table(r.stdout):
        if row.get("OBJECT") == "holder-b" and "Multi-Attach error" in row.get("MESSAGE", ""):
            return None
    return "no Multi-Attach error for holder-b yet"


def still_waiting(r: Result, ctx: Context) -> str | None:
    rows = {row["NAME"]: row for row in table(r.stdout)}
    a = rows.get("holder-a")
    b = rows.get("holder-b")
    if a is None or a["PHASE"] != "Running":
        return "holder-a is not Running"
    if b is None or b["PHASE"] != "Pending":
        return f"holder-b is {b['PHASE'] if b else 'missing'}, not Pending"
    return None


POD_COLUMNS = "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,STATUS:.status.phase"


def steps(ctx: Context) -> list[Step]:
    nodes = list(dict.fromkeys([*ctx.groups.get("kube_node", []), *ctx.hosts]))
    if len(nodes) < 2:
        return [
            Step(
                say="Access modes are about nodes: this demo needs two of them.",
                stop=lambda r, c: (
                    f"lab {c.lab} has one node ({', '.join(c.hosts)}): "
                    "access modes need two nodes to show"
                ),
            )
        ]
    a, b = two_nodes(ctx)
    return [
        Step(
            say=f"ReadWriteMany: one CephFS claim, a writer pod on {a} and one on {b}.",
            apply=("namespace.yaml", "rwx.yaml"),
            kubectl=[
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                "pod/writer-a",
                "pod/writer-b",
                "--timeout=300s",
            ],
        ),
        Step(
            say="Two pods, two nodes, one volume.",
            kubectl=[
                "-n",
                NS,
                "get",
                "pods",
                "-o",
                "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,STATUS:.status.phase",
            ],
            check=on_two_nodes,
        ),
        Step(
            say="Both are writing to the same file at the same time: read it back.",
            kubectl=["-n", NS, "exec", "writer-a", "--", "tail", "-n", "8", "/data/log.txt"],
            check=both_writers,
            wait=30,
        ),
        Step(
            say=f"ReadWriteOnce: an RBD claim, held by a pod on {a}. The image is mapped "
            f"as a local disk on {a} with ext4 on it - only one node may mount that.",
            needs=("rbd",),
            apply=("rwo.yaml",),
            kubectl=["-n", NS, "wait", "--for=condition=Ready", "pod/holder-a", "--timeout=300s"],
        ),
        Step(
            say=f"A second pod wants the same claim on {b}.",
            apply=("rwo-second.yaml",),
            kubectl=["-n", NS, "get", "pod", "holder-b", "-o", POD_COLUMNS],
        ),
        Step(
            say="The attach/detach controller refuses: the volume is attached to another node.",
            kubectl=[
                "-n",
                NS,
                "get",
                "events",
                "--field-selector",
                "reason=FailedAttachVolume",
                "-o",
                "custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
            ],
            check=multi_attach,
            wait=120,
        ),
        Step(
            say="holder-a keeps running; holder-b waits in ContainerCreating for as long as "
            "holder-a holds the volume. (Two pods on the SAME node could share an RWO "
            "volume; ReadWriteOncePod forbids even that.)",
            kubectl=[
                "-n",
                NS,
                "get",
                "pods",
                "holder-a",
                "holder-b",
                "-o",
                "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase",
            ],
            check=still_waiting,
        ),
    ]


DEMO = Demo(
    name="access-modes",
    summary="RWO locks an RBD volume to one node (Multi-Attach), RWX CephFS is shared by pods "
    "on two nodes",
    point="ReadWriteOnce volumes attach to one node at a time; ReadWriteMany volumes are "
    "written from several nodes at once",
    minutes=5,
    steps=steps,
    extra={"nodes": two_nodes},
)
