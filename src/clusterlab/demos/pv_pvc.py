"""pv-pvc: StorageClass -> PVC -> PV; dynamic and static binding; Delete vs Retain; scopes."""

from __future__ import annotations

import json

from clusterlab.demos.base import LABEL, Context, Demo, Result, Step
from clusterlab.demos.kubeout import table

NAME = "pv-pvc"
NS = "demo-pv-pvc"
PV_COLUMNS = (
    "custom-columns=NAME:.metadata.name,CLAIMNS:.spec.claimRef.namespace,"
    "CLAIM:.spec.claimRef.name,CLASS:.spec.storageClassName,"
    "RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase"
)
CLUSTER_SCOPED = ("persistentvolumes", "storageclasses.storage.k8s.io")
STORAGE_WORDS = ("persistentvolume", "storageclass", "volumeattachment", "csi", "volumesnapshot")


def demo_pvs(r: Result) -> dict[str, dict[str, str]]:
    """claim name -> PV row, for the PVs whose claim is (or was) in the demo's namespace."""
    return {row["CLAIM"]: row for row in table(r.stdout) if row["CLAIMNS"] == NS}


def show_demo_pvs(r: Result) -> str:
    lines = r.stdout.splitlines()
    return "\n".join(lines[:1] + [line for line in lines[1:] if f" {NS} " in line])


def classes(r: Result, ctx: Context) -> str | None:
    names = {row["NAME"] for row in table(r.stdout)}
    return None if "rook-cephfs" in names else "there is no StorageClass rook-cephfs"


def dynamic(r: Result, ctx: Context) -> str | None:
    pvs = demo_pvs(r)
    for claim in ("scratch", "keeper"):
        row = pvs.get(claim)
        if row is None:
            return f"no PV was provisioned for the claim {claim}"
        if row["STATUS"] != "Bound" or row["RECLAIM"] != "Delete":
            return f"the PV of {claim} is {row['STATUS']}/{row['RECLAIM']}, not Bound/Delete"
    return None


def keep_pv(r: Result, ctx: Context) -> dict[str, str]:
    row = demo_pvs(r).get("keeper")
    return {"pv": row["NAME"]} if row else {}


def retained(r: Result, ctx: Context) -> str | None:
    pvs = demo_pvs(r)
    if "scratch" in pvs:
        return f"the PV of scratch ({pvs['scratch']['NAME']}) is still there: Delete not done yet"
    row = pvs.get("keeper")
    if row is None:
        return "the PV of keeper is gone: it was not retained"
    if row["STATUS"] != "Released" or row["RECLAIM"] != "Retain":
        return f"the PV of keeper is {row['STATUS']}/{row['RECLAIM']}, not Released/Retain"
    return None


def read_back(r: Result, ctx: Context) -> str | None:
    if "written by writer" not in r.stdout:
        return "the new claim's volume does not hold the writer's file: not the same PV"
    return None


def api_names(r: Result) -> set[str]:
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def show_storage(r: Result) -> str:
    return "\n".join(sorted(n for n in api_names(r) if any(w in n for w in STORAGE_WORDS)))


def cluster_scoped(r: Result, ctx: Context) -> str | None:
    names = api_names(r)
    missing = [n for n in CLUSTER_SCOPED if n not in names]
    if missing:
        return f"not listed as cluster-scoped: {', '.join(missing)}"
    if "persistentvolumeclaims" in names:
        return "persistentvolumeclaims is listed as cluster-scoped"
    return None


def namespaced(r: Result, ctx: Context) -> str | None:
    names = api_names(r)
    if "persistentvolumeclaims" not in names:
        return "persistentvolumeclaims is not listed as namespaced"
    wrong = [n for n in CLUSTER_SCOPED if n in names]
    return f"listed as namespaced: {', '.join(wrong)}" if wrong else None


def reclaim_policy(policy: str) -> str:
    return json.dumps({"spec": {"persistentVolumeReclaimPolicy": policy}})


PREBIND = json.dumps(
    {
        "spec": {
            "claimRef": {
                "namespace": NS,
                "name": "keeper-again",
                "uid": None,
                "resourceVersion": None,
            }
        }
    }
)


def steps(ctx: Context) -> list[Step]:
    get_pvs = ["get", "pv", "-o", PV_COLUMNS]
    return [
        Step(
            say="A StorageClass names a provisioner and its parameters; it is cluster-wide. "
            "A claim (PVC) asks a class for a size and an access mode.",
            kubectl=[
                "get",
                "storageclass",
                "-o",
                "custom-columns=NAME:.metadata.name,PROVISIONER:.provisioner,"
                "RECLAIM:.reclaimPolicy,BINDING:.volumeBindingMode,"
                "EXPANSION:.allowVolumeExpansion",
            ],
            check=classes,
        ),
        Step(
            say="Two claims on rook-cephfs, and a pod writing a file into one of them.",
            apply=("namespace.yaml", "claims.yaml"),
            kubectl=[
                "-n",
                NS,
                "wait",
                "--for=jsonpath={.status.phase}=Bound",
                "pvc/scratch",
                "pvc/keeper",
                "--timeout=180s",
            ],
        ),
        Step(
            say="Dynamic provisioning: the CSI provisioner made one PV per claim. PVs carry "
            "the class's reclaim policy: Delete.",
            kubectl=get_pvs,
            show=show_demo_pvs,
            check=dynamic,
            keep=keep_pv,
            wait=60,
        ),
        Step(
            say="Label keeper's PV ($pv) as this demo's: PVs are cluster-scoped, the "
            "namespace's deletion would not find it.",
            kubectl=["label", "pv", "$pv", f"{LABEL}={NAME}", "--overwrite"],
        ),
        Step(
            say="The writer pod is up and has written its file.",
            kubectl=["-n", NS, "wait", "--for=condition=Ready", "pod/writer", "--timeout=180s"],
        ),
        Step(
            say="Switch keeper's PV to Retain: the volume now outlives its claim.",
            kubectl=["patch", "pv", "$pv", "-p", reclaim_policy("Retain")],
        ),
        Step(
            say="Delete the pod and both claims.",
            kubectl=[
                "-n",
                NS,
                "delete",
                "pod/writer",
                "pvc/scratch",
                "pvc/keeper",
                "--wait=true",
                "--timeout=180s",
            ],
        ),
        Step(
            say="scratch's PV went with its claim (Delete: the CephFS subvolume is gone too). "
            "keeper's PV is Released: the data is there, no claim may use it until an "
            "admin says so.",
            kubectl=get_pvs,
            show=show_demo_pvs,
            check=retained,
            wait=90,
        ),
        Step(
            say="Static binding: the admin hands the existing PV to a named claim "
            "(spec.claimRef); a claim of that name binds to it instead of getting a new one.",
            kubectl=["patch", "pv", "$pv", "--type", "merge", "-p", PREBIND],
        ),
        Step(
            say="The new claim and a reader pod.",
            apply=("reclaim.yaml",),
            kubectl=["-n", NS, "wait", "--for=condition=Ready", "pod/reader", "--timeout=180s"],
        ),
        Step(
            say="The reader finds the writer's file: same PV, same data, new claim.",
            kubectl=["-n", NS, "exec", "reader", "--", "cat", "/data/proof.txt"],
            check=read_back,
        ),
        Step(
            say="Back to Delete, so the cleanup removes the volume from Ceph too.",
            kubectl=["patch", "pv", "$pv", "-p", reclaim_policy("Delete")],
        ),
        Step(
            say="Cluster-scoped (no namespace): PVs, StorageClasses, CSI objects ...",
            kubectl=["api-resources", "--namespaced=false", "-o", "name"],
            show=show_storage,
            check=cluster_scoped,
        ),
        Step(
            say="... namespaced: the claims (and the pods that use them).",
            kubectl=["api-resources", "--namespaced=true", "-o", "name"],
            show=show_storage,
            check=namespaced,
        ),
    ]


DEMO = Demo(
    name=NAME,
    summary="StorageClass -> PVC -> PV: dynamic and static binding, Delete vs Retain, scopes",
    point="a claim gets its PV from a class (dynamic) or binds to an existing PV (static); "
    "a Retain PV and its data survive the claim",
    minutes=5,
    steps=steps,
)
