"""The demo runner's machinery without a cluster: narration, commands shown before they run,
trimmed output, checks retried until the step's wait, refusals, cleanup, re-runs, records.

The runner reaches the cluster only through its executor (a callable: kubectl arguments ->
Result). Here the executor is the test's: `Cluster` answers the few calls the runner makes
itself (namespace, PersistentVolumes, labelled objects), with outputs shaped like kubectl's,
and keeps what they change, so cleanup and re-runs are checked by what is left; a demo's own
step commands get the answers each test scripts. It stands in for no kubectl anywhere else.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterlab import inventory as inventory_mod
from clusterlab import paths
from clusterlab.demos import DEMOS, ORDER, base, runner
from clusterlab.demos.base import LABEL, Context, Demo, DemoError, Result, Step
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file

NAME = "unit-demo"
NS = "demo-unit-demo"
OK = Result(0, "", "")


def ctx(**extra) -> Context:
    return Context(
        lab="unit",
        vars={"clusterlab_lab": "unit", "clusterlab_shared_kernel": False, **extra},
        hosts=["node1", "node2", "node3"],
        hostvars={h: {} for h in ("node1", "node2", "node3")},
        groups={"kube_control_plane": ["node1"]},
    )


class Cluster:
    """What the runner's own calls see and change (shaped like kubectl's output)."""

    def __init__(self, answers=None):
        self.namespaces: set[str] = set()
        self.pvs: dict[str, dict] = {}
        self.labelled: dict[str, set[str]] = {"storageclasses": set()}
        self.answers = answers or {}  # tuple(args) -> Result or list of Results (in turn)
        self.calls: list[list[str]] = []
        self.stuck: set[str] = set()  # PVs a delete does not remove (e.g. a finalizer)

    def pv(self, name, *, demo=None, claim_ns=None, policy="Delete"):
        meta = {"name": name, "labels": {LABEL: demo} if demo else {}}
        spec = {"persistentVolumeReclaimPolicy": policy}
        if claim_ns:
            spec["claimRef"] = {"namespace": claim_ns, "name": "data"}
        self.pvs[name] = {"metadata": meta, "spec": spec}

    def __call__(self, args: list[str]) -> Result:
        self.calls.append(args)
        key = tuple(args)
        if key in self.answers:
            answer = self.answers[key]
            return answer.pop(0) if isinstance(answer, list) else answer
        verb = args[0]
        if args[:2] == ["get", "namespace"]:
            return Result(0, f"namespace/{args[2]}\n" if args[2] in self.namespaces else "", "")
        if args[:2] == ["get", "persistentvolumes"]:
            items = [self.pvs[n] for n in sorted(self.pvs)]
            return Result(0, json.dumps({"apiVersion": "v1", "items": items, "kind": "List"}), "")
        if verb == "get" and "-l" in args:
            return self._selected(args[1], args[args.index("-l") + 1])
        if args[:2] == ["create", "namespace"]:
            if args[2] in self.namespaces:
                msg = f'Error from server (AlreadyExists): namespaces "{args[2]}" already exists\n'
                return Result(1, "", msg)
            self.namespaces.add(args[2])
            return Result(0, f"namespace/{args[2]} created\n", "")
        if args[:2] == ["delete", "namespace"]:
            if args[2] in self.namespaces:
                self.namespaces.discard(args[2])
                for name, pv in list(self.pvs.items()):
                    claim = pv["spec"].get("claimRef", {})
                    policy = pv["spec"]["persistentVolumeReclaimPolicy"]
                    mine = claim.get("namespace") == args[2] and name not in self.stuck
                    if mine and policy == "Delete":
                        del self.pvs[name]
                return Result(0, f'namespace "{args[2]}" deleted\n', "")
            return OK
        if verb == "delete" and "-l" in args:
            selector = args[args.index("-l") + 1]
            kind = args[1]
            if kind == "persistentvolumes":
                gone = [n for n in self._pv_names(selector) if n not in self.stuck]
                for n in gone:
                    del self.pvs[n]
                return Result(0, "".join(f'persistentvolume "{n}" deleted\n' for n in gone), "")
            if kind not in self.labelled:
                msg = f'error: the server doesn\'t have a resource type "{kind}"\n'
                return Result(1, "", msg)
            self.labelled[kind].clear()
            return OK
        if verb == "patch" and args[1] == "persistentvolume":
            patch = json.loads(args[args.index("-p") + 1])
            self.pvs[args[2]]["spec"].update(patch["spec"])
            return Result(0, f"persistentvolume/{args[2]} patched\n", "")
        if verb in ("label", "apply"):
            return Result(0, "configured\n", "")
        raise AssertionError(f"unscripted kubectl call: {args}")

    def _pv_names(self, selector):
        key, _, value = selector.partition("=")
        return [n for n, pv in self.pvs.items() if pv["metadata"]["labels"].get(key) == value]

    def _selected(self, kind, selector):
        if kind not in self.labelled:
            msg = f'error: the server doesn\'t have a resource type "{kind}"\n'
            return Result(1, "", msg)
        return Result(0, "".join(f"{kind[:-1]}/{n}\n" for n in sorted(self.labelled[kind])), "")


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def templates(tmp_path, monkeypatch):
    """A template folder for the unit demo (the real demos' are in the package)."""
    root = tmp_path / "templates"
    (root / NAME).mkdir(parents=True)
    (root / NAME / "pvc.yaml.j2").write_text(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n"
        "  namespace: {{ ns }}\nspec:\n  storageClassName: rook-ceph-block\n"
    )
    monkeypatch.setattr(base, "TEMPLATES", root)
    return root


def demo(steps, **kw) -> Demo:
    return Demo(
        name=NAME,
        summary="a demo of the runner",
        point="the runner narrates",
        minutes=1,
        steps=lambda _ctx: steps,
        **kw,
    )


def make(steps, cluster, tmp_path, **kw):
    lines: list[str] = []
    clock = Clock()

    def out(line):
        lines.append(line)
        cluster.calls.append(["<out>", line])  # one timeline of what is shown and what runs

    r = runner.Runner(
        demo(steps, **kw), ctx(), cluster, tmp_path / "state" / "demos" / NAME, out=out
    )
    r.clock, r.sleep, r.interval = clock, clock.sleep, 2.0
    return r, lines, clock


GET_PVC = ["get", "pvc", "-n", NS, "data", "-o", "jsonpath={.status.phase}"]


def bound(res: Result, _ctx) -> str | None:
    return None if res.stdout == "Bound" else f"the claim is {res.stdout or 'missing'}, not Bound"


# ------------------------------------------------------------------ narration


def test_steps_are_narrated_in_order_each_command_shown_before_it_runs(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Bound", "")})
    steps = [
        Step("Claim a volume.", apply=("pvc.yaml",)),
        Step("The claim binds.", kubectl=GET_PVC, check=bound),
    ]
    r, lines, _ = make(steps, cluster, tmp_path)
    r.run()
    timeline = [c[1] if c[0] == "<out>" else ("RUN", *c) for c in cluster.calls]
    manifest = str(tmp_path / "state" / "demos" / NAME / "pvc.yaml")
    i_say1 = timeline.index("\n[1/2] Claim a volume.")
    i_apply_shown = timeline.index(f"$ kubectl apply -n {NS} -f {manifest}")
    i_apply_run = timeline.index(("RUN", "apply", "-n", NS, "-f", manifest))
    i_say2 = timeline.index("\n[2/2] The claim binds.")
    i_get_shown = timeline.index(
        "$ kubectl get pvc -n demo-unit-demo data -o 'jsonpath={.status.phase}'"
    )
    i_get_run = timeline.index(("RUN", *GET_PVC))
    i_output = timeline.index("Bound")
    assert i_say1 < i_apply_shown < i_apply_run < i_say2 < i_get_shown < i_get_run < i_output
    assert lines[-1] == "\nThe point: the runner narrates"
    assert "kubeconfig" not in "\n".join(lines)
    # the manifest applied is the rendered template
    assert f"namespace: {NS}" in (tmp_path / "state" / "demos" / NAME / "pvc.yaml").read_text()


def test_the_output_is_trimmed_by_the_step(tmp_path, templates):
    # shaped like `kubectl get pvc -n demo-unit-demo`
    table = (
        "NAME   STATUS   VOLUME                                     CAPACITY   ACCESS MODES   "
        "STORAGECLASS      VOLUMEATTRIBUTESCLASS   AGE\n"
        "data   Bound    pvc-0b6f8a59-3c1e-4d0e-9b4c-5f2f0e1d2c3b   1Gi        RWO            "
        "rook-ceph-block   <unset>                 12s\n"
    )
    args = ["get", "pvc", "-n", NS]
    cluster = Cluster({tuple(args): Result(0, table, "")})
    only_status = Step(
        "Status only.",
        kubectl=args,
        show=lambda res: " ".join(res.stdout.splitlines()[1].split()[:2]),
    )
    r, lines, _ = make([only_status], cluster, tmp_path)
    r.run()
    assert "data Bound" in lines
    assert not any("VOLUMEATTRIBUTESCLASS" in line for line in lines)


def test_untrimmed_output_is_all_of_stdout(tmp_path, templates):
    args = ["get", "sc"]
    cluster = Cluster({tuple(args): Result(0, "line one\nline two\n", "")})
    r, lines, _ = make([Step("Everything.", kubectl=args)], cluster, tmp_path)
    r.run()
    assert "line one\nline two" in lines


# ------------------------------------------------------------------ checks


def test_a_check_is_retried_until_it_passes_within_the_wait(tmp_path, templates):
    pending = Result(0, "Pending", "")
    cluster = Cluster({tuple(GET_PVC): [pending, pending, Result(0, "Bound", "")]})
    r, lines, clock = make(
        [Step("Binds.", kubectl=GET_PVC, check=bound, wait=60)], cluster, tmp_path
    )
    r.run()
    assert [c for c in cluster.calls if c == GET_PVC] == [GET_PVC] * 3
    assert clock.slept == [2.0, 2.0]
    assert "  … waiting up to 60 s: the claim is Pending, not Bound" in lines
    assert sum("waiting" in line for line in lines) == 1  # said once, not at every try
    assert "Bound" in lines


def test_a_check_that_never_passes_fails_the_demo_with_its_problem(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): [Result(0, "Pending", "")] * 10})
    steps = [Step("Binds.", kubectl=GET_PVC, check=bound, wait=6)]
    r, lines, clock = make(steps, cluster, tmp_path)
    with pytest.raises(DemoError) as err:
        r.run()
    assert str(err.value) == (f"demo {NAME}, step 1 (Binds.): the claim is Pending, not Bound")
    assert clock.now >= 6
    assert len([c for c in cluster.calls if c == GET_PVC]) == 4
    assert "Pending" in lines  # what went wrong is shown before the error


def test_a_check_without_wait_runs_once(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): [Result(0, "Pending", ""), Result(0, "Bound", "")]})
    r, _, clock = make([Step("Binds.", kubectl=GET_PVC, check=bound)], cluster, tmp_path)
    with pytest.raises(DemoError, match="not Bound"):
        r.run()
    assert clock.slept == []


def test_a_failing_command_fails_the_step_with_kubectl_s_message(tmp_path, templates):
    args = ["exec", "-n", NS, "writer", "--", "cat", "/data/x"]
    msg = 'Error from server (NotFound): pods "writer" not found\n'
    cluster = Cluster({tuple(args): Result(1, "", msg)})
    r, lines, _ = make([Step("Read.", kubectl=args)], cluster, tmp_path)
    with pytest.raises(DemoError, match='pods "writer" not found'):
        r.run()
    assert msg.strip() in lines  # stderr shown when nothing trims it


def test_may_fail_makes_a_non_zero_exit_part_of_the_point(tmp_path, templates):
    args = ["exec", "-n", NS, "reader", "--", "touch", "/data/x"]
    denied = Result(
        1, "", "touch: /data/x: Read-only file system\ncommand terminated with exit code 1\n"
    )
    cluster = Cluster({tuple(args): denied})

    def refused(res, _ctx):
        return None if "Read-only file system" in res.stderr else "the write went through"

    r, _, _ = make(
        [Step("A read-only mount.", kubectl=args, check=refused, may_fail=True)], cluster, tmp_path
    )
    r.run()  # passes: the failure is what the step proves

    cluster = Cluster({tuple(args): Result(0, "", "")})
    r, _, _ = make(
        [Step("A read-only mount.", kubectl=args, check=refused, may_fail=True)], cluster, tmp_path
    )
    with pytest.raises(DemoError, match="the write went through"):
        r.run()


# ------------------------------------------------------------------ --step


def test_step_waits_between_steps_only_on_a_terminal(tmp_path, templates):
    assert runner.pause_for(True, interactive=False) is None
    assert runner.pause_for(False, interactive=True) is None
    assert runner.pause_for(True, interactive=True) is runner.enter_to_continue
    cluster = Cluster()
    pauses = []
    r, _, _ = make([Step("one"), Step("two"), Step("three")], cluster, tmp_path)
    r.pause = lambda: pauses.append(len([c for c in cluster.calls if c[0] == "<out>"]))
    r.run()
    assert len(pauses) == 2  # between steps, not before the first nor after the last


def test_step_without_a_terminal_runs_through_and_says_so(tmp_path):
    """`clusterlab demo --step` with stdin not a terminal: pause_for decides from fd 0."""
    code = "from clusterlab.demos import runner; print(runner.pause_for(True))"
    res = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == "None"


# ------------------------------------------------------------------ cleanup and re-runs


def test_cleanup_removes_the_namespace_and_labelled_volumes_and_checks(tmp_path, templates):
    cluster = Cluster()
    cluster.namespaces |= {NS, "default"}
    cluster.pv("pvc-1", claim_ns=NS)  # dynamically provisioned for a claim of the demo
    cluster.pv("pvc-kept", claim_ns=NS, policy="Retain")  # outlives its claim unless patched
    cluster.pv("static-1", demo=NAME, policy="Retain")  # the demo's own, labelled
    cluster.pv("other", claim_ns="default")
    cluster.labelled["storageclasses"] = {"demo-retain"}
    r, lines, _ = make([], cluster, tmp_path)
    r.cleanup()
    assert cluster.namespaces == {"default"}
    assert set(cluster.pvs) == {"other"}
    assert cluster.labelled["storageclasses"] == set()
    patched = [c[2] for c in cluster.calls if c[0] == "patch"]
    assert sorted(patched) == ["pvc-kept", "static-1"]
    assert f"$ kubectl delete namespace {NS} --ignore-not-found" in lines
    assert lines[-1].startswith(f"Nothing of {NAME} is left")


def test_cleanup_says_what_is_left(tmp_path, templates):
    cluster = Cluster()
    cluster.pv("static-1", demo=NAME)
    cluster.stuck.add("static-1")
    r, _, clock = make([], cluster, tmp_path)
    with pytest.raises(DemoError, match=f"cleanup of {NAME} left: persistentvolume/static-1"):
        r.cleanup()
    assert clock.now >= runner.LEFTOVER_WAIT  # it waited for the CSI driver first


def test_the_demo_s_own_cleanup_runs_first(tmp_path, templates):
    snap = ["delete", "volumesnapshotcontent", "-l", f"{LABEL}={NAME}", "--ignore-not-found"]
    cluster = Cluster({tuple(snap): OK})
    r, _, _ = make([], cluster, tmp_path, cleanup=lambda _c: [Step("Snapshots.", kubectl=snap)])
    r.cleanup()
    runs = [c for c in cluster.calls if c[0] != "<out>"]
    assert runs.index(snap) < next(
        i for i, c in enumerate(runs) if c[:2] == ["delete", "namespace"]
    )


def test_a_re_run_cleans_the_previous_run_first(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Bound", "")})
    cluster.namespaces.add(NS)  # left by the previous run
    cluster.pv("pvc-1", claim_ns=NS)
    r, lines, _ = make([Step("Binds.", kubectl=GET_PVC, check=bound)], cluster, tmp_path)
    r.run()
    runs = [c for c in cluster.calls if c[0] != "<out>"]
    delete = runs.index(
        ["delete", "namespace", NS, "--ignore-not-found", "--wait", "--timeout=300s"]
    )
    create = runs.index(["create", "namespace", NS])
    assert delete < create
    assert f"A previous run of {NAME} left objects: cleaning them first." in lines
    assert "pvc-1" not in cluster.pvs

    fresh = Cluster({tuple(GET_PVC): Result(0, "Bound", "")})
    r, lines, _ = make([Step("Binds.", kubectl=GET_PVC, check=bound)], fresh, tmp_path)
    r.run()
    assert not any(c[0] == "delete" for c in fresh.calls)


# ------------------------------------------------------------------ refusals and records


def test_needs_refuses_naming_the_nodes_and_changes_nothing(tmp_path, templates):
    cluster = Cluster()
    features = {
        "node1": {"rbd": True, "nbd": False, "ceph": True},
        "node2": {"rbd": False, "nbd": False, "ceph": True},
        "node3": {"rbd": False, "nbd": False, "ceph": False},
    }
    d = demo([Step("x", kubectl=["get", "pods"])], needs=("rbd",))
    with pytest.raises(DemoError) as err:
        runner.run_demo(d, ctx(), tmp_path, cluster, lambda nodes: features, out=lambda _l: None)
    msg = str(err.value)
    assert "node2, node3 lack the rbd (or nbd) module" in msg
    assert "node1" not in msg
    assert cluster.calls == []
    assert not (tmp_path / "demos").exists()


def test_needs_on_shared_kernel_nodes_says_to_load_the_module_on_the_host():
    missing = runner.lacking(("rbd", "ceph"), {"n1": {"rbd": False, "nbd": False, "ceph": False}})
    assert missing == {"rbd": ["n1"], "ceph": ["n1"]}
    msg = runner.refusal(demo([], needs=("rbd", "ceph")), missing, shared_kernel=True)
    assert "n1 lacks the rbd (or nbd) module; n1 lacks the ceph module" in msg
    assert "modprobe rbd ceph" in msg


def test_nbd_serves_rbd_where_the_class_maps_with_rbd_nbd():
    # every node has nbd, one also rbd: the class's mounter is rbd-nbd, so all can map
    nbd = {n: {"rbd": n == "a", "nbd": True, "ceph": True} for n in ("a", "b")}
    assert runner.lacking(("rbd",), nbd) == {}


def test_a_run_is_recorded_for_verify_and_cleanup_forgets_it(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Bound", "")})
    d = demo([Step("Binds.", kubectl=GET_PVC, check=bound)], needs=("rbd",))
    able = {n: {"rbd": True, "nbd": False, "ceph": True} for n in ("node1", "node2", "node3")}
    runner.run_demo(d, ctx(), tmp_path, cluster, lambda nodes: able, out=lambda _l: None)
    record = json.loads(runner.done_file(tmp_path, NAME).read_text())
    assert record["lab"] == "unit"
    assert record["time"]
    assert record["steps"] == 1
    assert record["ended"] is None
    assert runner.demos_done(tmp_path) == [NAME]
    runner.run_demo(
        d, ctx(), tmp_path, cluster, lambda nodes: able, cleanup=True, out=lambda _l: None
    )
    assert runner.demos_done(tmp_path) == []
    assert NS not in cluster.namespaces


def test_a_failed_run_is_not_recorded(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Pending", "")})
    d = demo([Step("Binds.", kubectl=GET_PVC, check=bound)])
    runner.record_done(tmp_path, runner.Runner(d, ctx(), cluster, tmp_path))  # an earlier success
    with pytest.raises(DemoError):
        runner.run_demo(d, ctx(), tmp_path, cluster, lambda nodes: {}, out=lambda _l: None)
    assert runner.demos_done(tmp_path) == []


# ------------------------------------------------------------------ verify


def test_verify_reruns_the_last_read_only_checked_step():
    write = Step("Write.", kubectl=["exec", "-n", NS, "w", "--", "sh", "-c", "echo x"], check=bound)
    first = Step("Binds.", kubectl=GET_PVC, check=bound)
    last = Step("Still bound.", kubectl=["get", "pvc", "-n", NS], check=bound)
    unchecked = Step("Look.", kubectl=["get", "pods", "-n", NS])
    d = demo([first, write, last, unchecked])
    assert runner.verify_steps(d, ctx()) == [last]
    own = [Step("Own.", kubectl=["get", "pv"], check=bound)]
    assert runner.verify_steps(demo([first], extra={"verify": lambda _c: own}), ctx()) == own
    assert runner.verify_steps(demo([write]), ctx()) == []


def test_verify_reports_the_problems_quietly(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Lost", "")})
    r, lines, _ = make([Step("Binds.", kubectl=GET_PVC, check=bound)], cluster, tmp_path)
    assert r.verify() == ["Binds.: the claim is Lost, not Bound"]
    assert lines == []


# ------------------------------------------------------------------ context and listing


def test_context_from_the_lab_s_inventory():
    spec = load_spec_file(paths.lab_spec_file("meetup-host"))
    inv = inventory_mod.render(spec, get_provider(spec).planned_connections())
    c = runner.context(inv)
    assert c.lab == "meetup-host"
    assert c.hosts == ["node1", "node2", "node3"]
    assert c.groups["kube_control_plane"] == ["node1"]
    assert c.vars["rook_mode"] == "host"
    assert c.hostvars["node2"]["ip"]


def test_the_list_has_one_line_per_demo_in_the_talk_s_order():
    text = runner.listing(DEMOS)
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == [n for n in ORDER if n in DEMOS]
    for line, d in zip(lines, DEMOS.values(), strict=True):
        assert f"{d.minutes} min" in line
        assert line.endswith(d.summary)


# ------------------------------------------------------------------ needs, stop, keep


FEATURES = {
    "node1": {"rbd": True, "nbd": False, "ceph": True},
    "node2": {"rbd": False, "nbd": False, "ceph": True},
    "node3": {"rbd": True, "nbd": False, "ceph": True},
}


def test_a_step_s_needs_end_the_demo_cleanly_there_naming_the_nodes(tmp_path, templates):
    cluster = Cluster({tuple(GET_PVC): Result(0, "Bound", "")})
    steps = [
        Step("CephFS first.", kubectl=GET_PVC, check=bound),
        Step("RBD from here.", kubectl=["get", "pods"], needs=("rbd",)),
        Step("More RBD.", kubectl=["get", "pods"]),
    ]
    lines = []
    d = demo(steps)
    runner.run_demo(d, ctx(), tmp_path, cluster, lambda nodes: FEATURES, out=lines.append)
    assert ["get", "pods"] not in cluster.calls
    assert lines[-1] == (
        "\nThe demo ends here (1 of 3 steps): the rest needs kernel clients the lab does not "
        "offer: node2 lacks the rbd (or nbd) module; load the module on the nodes or use a lab "
        "whose kernel has it"
    )
    record = json.loads(runner.done_file(tmp_path, NAME).read_text())
    assert record["steps"] == 1
    assert "node2" in record["ended"]


def test_stop_ends_the_demo_cleanly_even_where_the_check_fails(tmp_path, templates):
    crds = ["get", "crd", "volumesnapshots.snapshot.storage.k8s.io", "--ignore-not-found"]
    cluster = Cluster({tuple(crds): Result(0, "", "")})

    def no_crds(res, _ctx):
        return None if res.stdout.strip() else "the VolumeSnapshot CRDs are not installed"

    steps = [
        Step("Snapshots?", kubectl=crds, check=lambda r, c: "no CRDs", stop=no_crds),
        Step("Snapshot.", kubectl=["get", "volumesnapshot"]),
    ]
    r, lines, _ = make(steps, cluster, tmp_path)
    r.run()
    assert r.ended == "the VolumeSnapshot CRDs are not installed"
    assert ["get", "volumesnapshot"] not in cluster.calls
    assert lines[-1].endswith("(1 of 2 steps): the VolumeSnapshot CRDs are not installed")


def test_kept_values_fill_later_steps(tmp_path, templates):
    # shaped like `kubectl get pvc -n demo-unit-demo data -o jsonpath={.spec.volumeName}`
    volume = ["get", "pvc", "-n", NS, "data", "-o", "jsonpath={.spec.volumeName}"]
    pv = "pvc-5d0c7e0a-2f3b-4c1d-8e9f-0a1b2c3d4e5f"
    label = ["label", "pv", pv, f"{LABEL}={NAME}"]
    cluster = Cluster({tuple(volume): Result(0, pv, ""), tuple(label): Result(0, "", "")})
    steps = [
        Step("The claim's PV.", kubectl=volume, keep=lambda r, c: {"pv": r.stdout}),
        Step("Label $pv.", kubectl=["label", "pv", "$pv", f"{LABEL}={NAME}"]),
    ]
    r, lines, _ = make(steps, cluster, tmp_path)
    r.run()
    assert label in cluster.calls
    assert f"\n[2/2] Label {pv}." in lines
    assert f"$ kubectl label pv {pv} {LABEL}={NAME}" in lines


def test_verify_uses_the_recorded_steps_and_values(tmp_path, templates):
    get_pv = ["get", "pv", "$pv", "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"]
    filled = ["get", "pv", "pvc-1", "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}"]

    def retained(res, _ctx):
        return None if res.stdout == "Retain" else f"policy {res.stdout}"

    steps = [
        Step("Retained.", kubectl=get_pv, check=retained),
        Step("Gone.", kubectl=["get", "pvc", "-n", NS], check=bound),
    ]
    cluster = Cluster({tuple(filled): Result(0, "Retain", "")})
    r, _, _ = make(steps, cluster, tmp_path)
    assert r.verify({"steps": 1, "kept": {"pv": "pvc-1"}}) == []
    assert filled in cluster.calls


def test_the_verify_suite_has_one_case_per_demo_recorded_on_the_lab(tmp_path):
    spec = load_spec_file(paths.lab_spec_file("meetup-host"))
    inv = inventory_mod.render(spec, get_provider(spec).planned_connections())
    inv["all"]["vars"]["clusterlab_state_dir"] = str(tmp_path / "state")
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(json.dumps(inv))
    done = runner.Runner(demo([]), ctx(), Cluster(), tmp_path)
    for name in ("pv-pvc", "csi"):
        runner.record_done(tmp_path / "state", done).rename(
            runner.done_file(tmp_path / "state", name)
        )
    infra = paths.TESTS_INFRA
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            str(infra / "test_demos.py"),
            "--hosts=ansible://all",
            f"--ansible-inventory={hosts}",
            "-c",
            str(infra / "pytest.ini"),
            "--rootdir",
            str(infra),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    cases = sorted(line.split("::")[1] for line in res.stdout.splitlines() if "::" in line)
    assert cases == [
        "test_the_demo_checks_pass_again[csi]",
        "test_the_demo_checks_pass_again[pv-pvc]",
        "test_the_demo_ran_on_this_lab_and_its_namespace_is_there[csi]",
        "test_the_demo_ran_on_this_lab_and_its_namespace_is_there[pv-pvc]",
    ], res.stdout + res.stderr


def test_the_namespace_is_made_only_where_the_manifests_do_not_make_it(tmp_path, templates):
    cluster = Cluster()
    r, _, _ = make([Step("Nothing.")], cluster, tmp_path)
    r.run()
    assert ["create", "namespace", NS] in cluster.calls
    (templates / NAME / "namespace.yaml.j2").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ ns }}\n"
        "  labels:\n    {{ label }}: {{ demo.name }}\n"
    )
    cluster = Cluster()
    r, _, _ = make([Step("Nothing.")], cluster, tmp_path)
    r.run()
    assert not any(c[:2] == ["create", "namespace"] for c in cluster.calls)


@pytest.mark.parametrize("name", ORDER)
@pytest.mark.parametrize("lab", ["meetup-host", "meetup-pvc"])
def test_every_file_a_demo_applies_is_one_it_renders(name, lab):
    spec = load_spec_file(paths.lab_spec_file(lab))
    c = runner.context(inventory_mod.render(spec, get_provider(spec).planned_connections()))
    d = DEMOS[name]
    rendered = set(base.render_manifests(d, c))
    steps = [*d.steps(c), *(d.cleanup(c) if d.cleanup else [])]
    applied = {f for s in steps for f in s.apply}
    assert applied <= rendered, f"{name} applies what it does not render: {applied - rendered}"
    assert all(s.kubectl is None or s.kubectl[0] != "kubectl" for s in steps)  # runner adds it
