"""statefulset: volumeClaimTemplates give every pod its own claim; a rolling update and a
deleted pod keep claims and data; a Deployment sharing one RWO claim gets stuck."""

from __future__ import annotations

from clusterlab.demos.base import Context, Demo, Result, Step

STS = "web"
REPLICAS = 3
TEMPLATE = "data"  # the volumeClaimTemplate's name: claims are data-web-0 …
POD_COLUMNS = (
    "custom-columns=NAME:.metadata.name,UID:.metadata.uid,"
    "CREATED:.metadata.creationTimestamp,NODE:.spec.nodeName"
)
PVC_COLUMNS = (
    "custom-columns=NAME:.metadata.name,STATUS:.status.phase,UID:.metadata.uid,"
    "VOLUME:.spec.volumeName,CLASS:.spec.storageClassName"
)


def columns(text: str) -> list[dict[str, str]]:
    """kubectl's table output (-o custom-columns or plain get): one dict per row."""
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines:
        return []
    head = lines[0].split()
    return [dict(zip(head, line.split(), strict=False)) for line in lines[1:]]


def claim(ordinal: int) -> str:
    return f"{TEMPLATE}-{STS}-{ordinal}"


def claims_bound(res: Result, _ctx: Context | None = None) -> str | None:
    rows = {r["NAME"]: r for r in columns(res.stdout)}
    for i in range(REPLICAS):
        row = rows.get(claim(i))
        if row is None:
            return f"no claim {claim(i)} (have {sorted(rows)})"
        if row["STATUS"] != "Bound":
            return f"{claim(i)} is {row['STATUS']}, not Bound"
    return None


def recreated_in_reverse(before: dict[str, dict], after: list[dict]) -> str | None:
    """Every pod is new (another uid) and the new pods were created from the highest ordinal
    down (creationTimestamp is RFC 3339 in UTC, so strings compare as times)."""
    now = {r["NAME"]: r for r in after}
    for name, row in before.items():
        if name not in now:
            return f"{name} is missing after the update"
        if now[name]["UID"] == row["UID"]:
            return f"{name} was not recreated (same uid {row['UID']})"
    order = [now[f"{STS}-{i}"]["CREATED"] for i in reversed(range(REPLICAS))]
    if order != sorted(order):
        return f"pods were not recreated in reverse ordinal order: {order} (web-2 … web-0)"
    return None


def same_claim(before: dict[str, str], res: Result) -> str | None:
    rows = columns(res.stdout)
    if len(rows) != 1:
        return f"expected one claim, got {rows}"
    row = rows[0]
    for key in ("UID", "VOLUME"):
        if row.get(key) != before.get(key):
            return f"{row['NAME']}'s {key} changed: {before.get(key)} -> {row.get(key)}"
    return None if row["STATUS"] == "Bound" else f"{row['NAME']} is {row['STATUS']}"


DEPLOY_POD = "web-deploy-"
# The event shapes the demo waits for (reason, then a piece of the message), as Kubernetes 1.35
# writes them: the attach/detach controller's FailedAttachVolume "Multi-Attach error for volume
# … Volume is already used by pod(s) …" (pkg/controller/volume/attachdetach/reconciler/
# reconciler.go, reportMultiAttachError), and on a one-node lab the scheduler's FailedScheduling
# "… node(s) didn't match pod anti-affinity rules" (pkg/scheduler/framework/plugins/
# interpodaffinity/filtering.go, ErrReasonAntiAffinityRulesNotMatch). Not any FailedScheduling:
# "pod has unbound immediate PersistentVolumeClaims" (volumebinding) comes in the first seconds
# while the RBD image is provisioned, and passes.
STUCK_EVENTS = (
    ("FailedAttachVolume", "Multi-Attach error"),
    ("FailedScheduling", "didn't match pod anti-affinity rules"),
)


def deployment_stuck(res: Result, _ctx: Context | None = None) -> str | None:
    """Events (REASON OBJECT MESSAGE) of the Deployment's pods: a web-deploy pod cannot attach
    the RWO volume on its node (Multi-Attach), or, on a one-node lab, cannot be placed beside
    the first (anti-affinity). Events of other pods (web-N of the StatefulSet) do not count."""
    for line in res.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith(DEPLOY_POD):
            continue
        if any(parts[0] == reason and text in parts[2] for reason, text in STUCK_EVENTS):
            return None
    return (
        "no web-deploy pod stuck yet (FailedAttachVolume: Multi-Attach error, or "
        "FailedScheduling: anti-affinity)"
    )


def one_running(res: Result, _ctx: Context | None = None) -> str | None:
    """Both replicas exist, one Running and one still Pending (it cannot attach or be placed)."""
    rows = columns(res.stdout)
    phases = sorted(r.get("STATUS", "") for r in rows)
    if phases != ["Pending", "Running"]:
        return (
            "expected 2 pods, one Running and one Pending: "
            f"{[(r['NAME'], r.get('STATUS')) for r in rows]}"
        )
    return None


def steps(ctx: Context) -> list[Step]:
    ns = DEMO.ns
    memo: dict[str, dict] = {}

    def remember_pods(res: Result, _ctx: Context) -> str | None:
        rows = columns(res.stdout)
        if len(rows) != REPLICAS:
            return f"expected {REPLICAS} pods, got {len(rows)}"
        memo["pods"] = {r["NAME"]: r for r in rows}
        return None

    def remember_claim(res: Result, _ctx: Context) -> str | None:
        rows = columns(res.stdout)
        if len(rows) != 1 or rows[0]["STATUS"] != "Bound":
            return f"{claim(1)} is not one Bound claim: {rows}"
        memo["claim"] = rows[0]
        return None

    def file_of(i: int):
        def check(res: Result, _ctx: Context) -> str | None:
            want = f"written by {STS}-{i}"
            return None if want in res.stdout else f"/data/hello of {STS}-{i} lost: {res.stdout!r}"

        return check

    get_pods = ["-n", ns, "get", "pods", "-l", f"app={STS}", "-o", POD_COLUMNS]
    out = [
        Step(
            say=f"A StatefulSet of {REPLICAS} pods; each gets its own claim from the "
            "volumeClaimTemplate (rook-ceph-block, ReadWriteOnce).",
            apply=("namespace.yaml", "statefulset.yaml"),
            kubectl=["-n", ns, "rollout", "status", f"statefulset/{STS}", "--timeout=30s"],
            wait=600,
        ),
        Step(
            say="Claims are named <template>-<statefulset>-<ordinal>, each Bound to its own PV.",
            kubectl=["-n", ns, "get", "pvc", "-o", PVC_COLUMNS],
            check=claims_bound,
        ),
    ]
    for i in range(REPLICAS):
        out.append(
            Step(
                say=f"Each pod writes its own file on its own volume ({STS}-{i}).",
                kubectl=[
                    "-n",
                    ns,
                    "exec",
                    f"{STS}-{i}",
                    "--",
                    "sh",
                    "-c",
                    f"echo 'written by {STS}-{i}' > /data/hello && cat /data/hello",
                ],
                check=file_of(i),
            )
        )
    out += [
        Step(
            say="The pods before the update (names, uids, ages, nodes).",
            kubectl=get_pods,
            check=remember_pods,
        ),
        Step(
            say="A rolling update: change one env var in the pod template …",
            kubectl=["-n", ns, "set", "env", f"statefulset/{STS}", "REVISION=2"],
        ),
        Step(
            say="… and the pods are replaced one at a time, highest ordinal first.",
            kubectl=["-n", ns, "rollout", "status", f"statefulset/{STS}", "--timeout=600s"],
        ),
        Step(
            say="Every pod is new, created web-2 → web-1 → web-0.",
            kubectl=get_pods,
            check=lambda res, _c: recreated_in_reverse(memo.get("pods", {}), columns(res.stdout)),
        ),
    ]
    for i in range(REPLICAS):
        out.append(
            Step(
                say=f"{STS}-{i} is a new pod, its data is still there.",
                kubectl=["-n", ns, "exec", f"{STS}-{i}", "--", "cat", "/data/hello"],
                check=file_of(i),
            )
        )
    pvc1 = ["-n", ns, "get", "pvc", claim(1), "-o", PVC_COLUMNS]
    out += [
        Step(
            say=f"Self-healing: {claim(1)} before we kill {STS}-1.",
            kubectl=pvc1,
            check=remember_claim,
        ),
        Step(say=f"Delete pod {STS}-1 …", kubectl=["-n", ns, "delete", "pod", f"{STS}-1"]),
        Step(
            say="… the StatefulSet recreates it under the same name …",
            kubectl=["-n", ns, "wait", "--for=condition=Ready", f"pod/{STS}-1", "--timeout=30s"],
            wait=300,
        ),
        Step(
            say="… on the same claim (same uid, same PV) …",
            kubectl=pvc1,
            check=lambda res, _c: same_claim(memo.get("claim", {}), res),
        ),
        Step(
            say="… with the same data.",
            kubectl=["-n", ns, "exec", f"{STS}-1", "--", "cat", "/data/hello"],
            check=file_of(1),
        ),
        Step(
            say="Now the same app as a Deployment: 2 replicas, ONE ReadWriteOnce claim. The "
            "second replica lands on another node and cannot attach the volume.",
            apply=("deployment.yaml",),
            kubectl=[
                "-n",
                ns,
                "get",
                "events",
                "--field-selector",
                "involvedObject.kind=Pod",
                "-o",
                "custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
            ],
            show=lambda res: "\n".join(
                x for x in res.stdout.splitlines() if x.startswith("REASON") or "web-deploy" in x
            ),
            check=deployment_stuck,
            wait=180,
        ),
        Step(
            say="One replica runs, the other is stuck: a Deployment cannot give replicas their "
            "own volumes. That is what StatefulSets are for.",
            kubectl=[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app=web-deploy",
                "-o",
                "custom-columns=NAME:.metadata.name,STATUS:.status.phase,NODE:.spec.nodeName",
            ],
            check=one_running,
            wait=180,
        ),
    ]
    return out


DEMO = Demo(
    name="statefulset",
    summary="volumeClaimTemplates, rolling update and self-healing keep each pod's data; "
    "a Deployment on one RWO claim gets stuck",
    point="A StatefulSet gives each replica its own claim that survives updates and pod "
    "deletion; replicas of a Deployment share one RWO volume and cannot all run.",
    minutes=8,
    steps=steps,
    needs=("rbd",),
)
