"""Demos statefulset, redis-ha, rook-modes: manifests for example labs validated at the lab's
minor, and each check's logic on outputs shaped like kubectl's output (pass and fail)."""

from __future__ import annotations

import json

import pytest
import yaml
from test_cni import validate_all

from clusterlab import inventory, paths
from clusterlab.demos import redis_ha, rook_modes, statefulset
from clusterlab.demos.base import LABEL, Context, Result, render_manifests
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file

pytestmark = pytest.mark.unit
DEMOS = [statefulset.DEMO, redis_ha.DEMO, rook_modes.DEMO]


def context(lab: str) -> Context:
    spec = load_spec_file(paths.lab_spec_file(lab))
    inv = inventory.render(spec, get_provider(spec).planned_connections())["all"]
    groups = {g: list(v.get("hosts") or {}) for g, v in inv["children"].items() if "hosts" in v}
    return Context(lab, inv["vars"], list(inv["hosts"]), inv["hosts"], groups)


def ok(stdout: str) -> Result:
    return Result(0, stdout, "")


@pytest.mark.parametrize("lab", ["meetup-host", "default", "meetup-pvc"])
@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.name)
def test_manifests_validate_and_stay_in_the_demos_namespace(lab, demo):
    ctx = context(lab)
    files = render_manifests(demo, ctx)
    docs = [d for text in files.values() for d in yaml.safe_load_all(text) if d]
    validate_all(docs, ctx.vars["kube_version"])
    for d in docs:
        if d["kind"] == "Namespace":
            assert d["metadata"]["name"] == demo.ns == f"demo-{demo.name}"
            assert d["metadata"]["labels"][LABEL] == demo.name
        else:
            assert d["metadata"]["namespace"] == demo.ns
    for step in demo.steps(ctx):
        assert all(name in files for name in step.apply)


def test_images_are_pinned_and_follow_the_mirror():
    ctx = context("meetup-host")
    mirrored = Context(
        ctx.lab,
        {**ctx.vars, "artifacts_image_registry": "reg.lab:5000"},
        ctx.hosts,
        ctx.hostvars,
        ctx.groups,
    )
    text = "".join(render_manifests(redis_ha.DEMO, ctx).values())
    assert 'image: "docker.io/library/redis:7.4.2"' in text
    assert 'image: "reg.lab:5000/library/redis:7.4.2"' in "".join(
        render_manifests(redis_ha.DEMO, mirrored).values()
    )


def test_redis_sentinel_config_in_the_pods():
    files = render_manifests(redis_ha.DEMO, context("default"))
    docs = list(yaml.safe_load_all(files["redis.yaml"]))
    script = docs[0]["data"]["sentinel.sh"]
    assert "sentinel monitor mymaster $PRIMARY 6379 2" in script
    assert "sentinel down-after-milliseconds mymaster 5000" in script
    assert "sentinel resolve-hostnames yes" in script
    assert "announce-hostnames yes" in script
    assert "\nEOF\n" in script  # the heredoc ends at column 0 after YAML's indentation
    assert docs[1]["spec"]["publishNotReadyAddresses"] is True
    assert "redis-0.redis.demo-redis-ha.svc.cluster.local" in docs[0]["data"]["redis.sh"]


# ---------------------------------------------------------------- statefulset checks
# shaped like kubectl's output (-o custom-columns)

PVCS = """NAME         STATUS   UID                                    VOLUME                                     CLASS
data-web-0   Bound    0b1c2d3e-0000-4000-8000-000000000000   pvc-11111111-0000-4000-8000-000000000000   rook-ceph-block
data-web-1   Bound    1b1c2d3e-0000-4000-8000-000000000000   pvc-22222222-0000-4000-8000-000000000000   rook-ceph-block
data-web-2   Bound    2b1c2d3e-0000-4000-8000-000000000000   pvc-33333333-0000-4000-8000-000000000000   rook-ceph-block
"""


def test_claims_bound():
    assert statefulset.claims_bound(ok(PVCS)) is None
    assert "Pending" in statefulset.claims_bound(ok(PVCS.replace("Bound ", "Pending", 1)))
    assert "data-web-2" in statefulset.claims_bound(ok("\n".join(PVCS.splitlines()[:3])))


BEFORE = """NAME    UID                                    CREATED                NODE
web-0   a0000000-0000-4000-8000-000000000000   2026-11-27T10:00:00Z   node1
web-1   a1000000-0000-4000-8000-000000000000   2026-11-27T10:00:09Z   node2
web-2   a2000000-0000-4000-8000-000000000000   2026-11-27T10:00:18Z   node3
"""
AFTER = """NAME    UID                                    CREATED                NODE
web-0   b0000000-0000-4000-8000-000000000000   2026-11-27T10:05:20Z   node1
web-1   b1000000-0000-4000-8000-000000000000   2026-11-27T10:05:10Z   node2
web-2   b2000000-0000-4000-8000-000000000000   2026-11-27T10:05:00Z   node3
"""


def test_rolling_update_recreates_in_reverse():
    before = {r["NAME"]: r for r in statefulset.columns(BEFORE)}
    assert statefulset.recreated_in_reverse(before, statefulset.columns(AFTER)) is None
    assert "not recreated" in statefulset.recreated_in_reverse(before, statefulset.columns(BEFORE))
    forward = AFTER.replace("10:05:20", "10:04:50")
    assert "reverse" in statefulset.recreated_in_reverse(before, statefulset.columns(forward))


def test_self_healing_same_claim():
    one = "\n".join([PVCS.splitlines()[0], PVCS.splitlines()[2]])
    before = statefulset.columns(one)[0]
    assert statefulset.same_claim(before, ok(one)) is None
    other = one.replace("pvc-22222222", "pvc-99999999")
    assert "VOLUME changed" in statefulset.same_claim(before, ok(other))


EVENTS = """REASON               OBJECT                        MESSAGE
Scheduled            web-deploy-6d9f7c-abcde       Successfully assigned demo-statefulset/web-deploy-6d9f7c-abcde to node2
FailedAttachVolume   web-deploy-6d9f7c-fghij       Multi-Attach error for volume "pvc-44444444" Volume is already used by pod(s) web-deploy-6d9f7c-abcde
"""


# Shapes of `kubectl get events -o custom-columns=REASON,OBJECT,MESSAGE` as a 1.35 cluster
# writes them: the scheduler's volumebinding "pod has unbound immediate PersistentVolumeClaims"
# (pkg/scheduler/framework/plugins/volumebinding, while the RBD image is provisioned) and
# interpodaffinity's "didn't match pod anti-affinity rules"; the attach/detach controller's
# Multi-Attach message (attachdetach/reconciler/reconciler.go).
UNBOUND = (
    "FailedScheduling     web-deploy-6d9f7c-fghij       0/3 nodes are available: pod has unbound "
    "immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is "
    "not helpful for scheduling."
)
STS_MULTI_ATTACH = (
    'FailedAttachVolume   web-1                         Multi-Attach error for volume "pvc-1111" '
    "Volume is already exclusively attached to one node and can't be attached to another"
)
ANTI_AFFINITY = (
    "FailedScheduling     web-deploy-6d9f7c-fghij       0/1 nodes are available: 1 node(s) "
    "didn't match pod anti-affinity rules. preemption: 0/1 nodes are available: 1 No "
    "preemption victims found for incoming pod."
)


def test_deployment_stuck():
    head, scheduled, _attach = EVENTS.splitlines()
    assert statefulset.deployment_stuck(ok(EVENTS)) is None
    assert statefulset.deployment_stuck(ok(f"{head}\n{scheduled}\n")) is not None
    # One-node lab: the second replica cannot be placed beside the first.
    assert statefulset.deployment_stuck(ok(f"{head}\n{scheduled}\n{ANTI_AFFINITY}\n")) is None


def test_deployment_stuck_ignores_the_first_seconds_and_other_pods():
    """The unbound-claim FailedScheduling of the provisioning seconds, and a Multi-Attach of the
    StatefulSet's own pods, are not the point the demo makes."""
    head, scheduled, _attach = EVENTS.splitlines()
    for noise in (UNBOUND, STS_MULTI_ATTACH):
        assert statefulset.deployment_stuck(ok(f"{head}\n{scheduled}\n{noise}\n")) is not None


def test_one_running_waits_for_one_running_one_pending():
    pods = """NAME                      STATUS    NODE
web-deploy-6d9f7c-abcde   Running   node2
web-deploy-6d9f7c-fghij   Pending   node3
"""
    assert statefulset.one_running(ok(pods)) is None
    assert statefulset.one_running(ok(pods.replace("Pending", "Running"))) is not None
    both_pending = pods.replace("Running", "Pending")
    assert statefulset.one_running(ok(both_pending)) is not None
    steps = {s.check: s for s in statefulset.steps(context("default"))}
    assert steps[statefulset.one_running].wait > 0, "checked once while both pods are Pending"
    assert steps[statefulset.deployment_stuck].wait > 0


# ---------------------------------------------------------------- redis-ha step checks


def test_redis_steps_wrap_the_tested_ops_in_kubectl_exec():
    ctx = context("meetup-host")
    steps = redis_ha.steps(ctx)
    primary = steps[1]
    assert primary.kubectl[:6] == ["-n", "demo-redis-ha", "exec", "redis-1", "-c", "sentinel"]
    assert primary.check(ok("redis-0.redis.demo-redis-ha.svc.cluster.local\n6379\n"), ctx) is None
    assert primary.check(ok("redis-2.redis.demo-redis-ha.svc.cluster.local\n6379\n"), ctx)
    promoted = steps[5]
    new = "primary redis-2.redis.demo-redis-ha.svc.cluster.local:6379\nmaster\n"
    assert promoted.check(ok(new), ctx) is None
    old = "primary redis-0.redis.demo-redis-ha.svc.cluster.local:6379\nmaster\n"
    assert "still names" in promoted.check(ok(old), ctx)
    gone = next(s for s in steps if s.say == "Gone.")
    assert gone.check(ok("\n\n\n"), ctx) is None
    assert gone.check(ok("kubernetes-storage\nredis-ha\n42\n"), ctx) is not None
    back = steps[-1]
    assert back.check(ok("kubernetes-storage\nredis-ha\n42\n"), ctx) is None


# ---------------------------------------------------------------- rook-modes checks


def test_rook_modes_host_lab():
    ctx = context("meetup-host")
    storage = {
        "useAllNodes": False,
        "useAllDevices": False,
        "nodes": [
            {"name": f"node{i}", "devices": [{"name": "vdb"}, {"name": "vdc"}]} for i in (1, 2, 3)
        ],
    }
    assert rook_modes.storage_spec(ok(json.dumps(storage)), ctx) is None
    pvc = {"storageClassDeviceSets": [{"name": "lab-disks", "count": 6}]}
    assert "host mode" in rook_modes.storage_spec(ok(json.dumps(pvc)), ctx)
    osd = "".join(
        f"rook-ceph-osd-{i}-5d8f\tnode{i // 2 + 1}\t/var/lib/rook /dev /run/udev \n"
        for i in range(6)
    )
    assert rook_modes.osd_volumes(ok(osd), ctx) is None
    assert rook_modes.osd_volumes(ok(osd.replace("/dev ", "lab-disks-data-0abc ", 1)), ctx)
    meta = [
        {"id": i, "hostname": "node1", "devices": "vdb", "bluestore_bdev_dev_node": "/dev/vdb"}
        for i in range(6)
    ]
    assert rook_modes.osd_metadata(ok(json.dumps(meta)), ctx) is None
    assert rook_modes.osd_metadata(ok(json.dumps(meta[:5])), ctx)
    assert rook_modes.local_pvs(ok("NAME   CLASS   PATH   CLAIM\n"), ctx) is None
    tree = "/host/var/lib/rook\n/host/var/lib/rook/mon-a\n/host/var/lib/rook/rook-ceph/x_y/whoami\n"
    assert rook_modes.node_dirs(ok(tree), ctx) is None
    assert rook_modes.node_dirs(ok(tree.replace("whoami", "keyring")), ctx)


def test_rook_modes_pvc_lab():
    ctx = context("meetup-pvc")
    pvc = {"useAllNodes": False, "storageClassDeviceSets": [{"name": "lab-disks", "count": 6}]}
    assert rook_modes.storage_spec(ok(json.dumps(pvc)), ctx) is None
    pvs = "NAME   CLASS   PATH   CLAIM\n" + "".join(
        f"local-node{i // 2 + 1}-vd{'bc'[i % 2]}   local-storage   /dev/vd{'bc'[i % 2]}   lab-disks-data-{i}x\n"
        for i in range(6)
    )
    assert rook_modes.local_pvs(ok(pvs), ctx) is None
    assert "not claimed" in rook_modes.local_pvs(
        ok(pvs.replace("lab-disks-data-0x", "<none>")), ctx
    )
    osd = "".join(
        f"rook-ceph-osd-{i}-5d8f\tnode1\tlab-disks-data-{i}x /var/lib/rook \n" for i in range(6)
    )
    assert rook_modes.osd_volumes(ok(osd), ctx) is None
    assert rook_modes.node_dirs(ok("/host/var/lib/rook/mon-a\n"), ctx) is None


@pytest.mark.parametrize(
    ("lab", "apps"),
    [
        ("meetup-host", ["rook-ceph-mon", "rook-ceph-osd"]),
        ("meetup-pvc", ["rook-ceph-mon"]),
    ],
)
def test_rook_modes_node_view_goes_where_a_mon_is(lab, apps):
    """node_dirs wants mon-* (and, in host mode, an OSD's whoami) on the viewed node: the pod
    is placed by podAffinity to those pods, not pinned to the first OSD node, which on a lab
    with fewer mons than nodes may have no mon."""
    pod = yaml.safe_load(render_manifests(rook_modes.DEMO, context(lab))["node-view.yaml"])
    assert "nodeName" not in pod["spec"]
    terms = pod["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["labelSelector"]["matchLabels"]["app"] for t in terms] == apps
    for term in terms:
        assert term["namespaces"] == [rook_modes.ROOK_NS]
        assert term["topologyKey"] == "kubernetes.io/hostname"
