"""Many labs on one machine: a lab name is one lab, commands on a lab never interleave, and
every interruption heals by one plain re-run or is refused clearly — while another lab on the
machine stays untouched (its node answers SSH, its bridge and nft table stay).

Interrupt points are found by polling the lab's state, never by sleeping. The labs are shared
by the module (a bystander and the labs under test) to keep the run short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from nodes import ssh

from clusterlab import registry
from clusterlab.providers import local

pytestmark = pytest.mark.integration


def poll(what, cond, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """The module's own machine record (set up before, and gone after, the labs' leak check,
    which destroys leftovers by the names recorded there)."""
    os.environ["CLUSTERLAB_RECORD_DIR"] = str(tmp_path_factory.mktemp("record"))
    yield
    del os.environ["CLUSTERLAB_RECORD_DIR"]


@pytest.fixture(scope="module")
def world(record, module_labs):
    by = module_labs.spec("lcby", 150, disks=["5G"])
    lca = module_labs.spec("lca", 151, disks=["5G"])
    for s in (by, lca):
        module_labs.provider(s)
        module_labs.cli("up", "--lab", s["name"], "--until", "provision")
    yield module_labs
    for s in (by, lca):
        module_labs.cli("down", "--lab", s["name"], check=False)


def prov_of(world, name: str) -> local.LocalProvider:
    prov = next(p for p in world.made if p.lab == name)
    prov._names = None  # names as the record says now
    return prov


def untouched(world) -> None:
    """The bystander lab is intact: node answers SSH, bridge up with its gateway, table."""
    prov = prov_of(world, "lcby")
    assert ssh(prov, "node1", "true").returncode == 0
    assert (
        "10.213.150.1"
        in subprocess.run(
            ["ip", "-4", "addr", "show", "dev", prov.bridge], capture_output=True, text=True
        ).stdout
    )
    assert subprocess.run(["nft", "list", "table", "ip", prov.table]).returncode == 0


def other_dir(world) -> dict[str, str]:
    return {"CLUSTERLAB_STATE": str(world.root / "elsewhere" / ".clusterlab")}


@pytest.fixture
def sigint_reaches_children():
    """SIGINT at its default in the children, as a terminal's ^C meets a program. A shell's
    background job (a CI runner's, `pytest &`) starts with SIGINT ignored, which Python keeps
    and every child inherits: the interrupt tests would interrupt nothing. An exec resets a
    handled signal to its default, so handling it here is enough."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_labs_lists_every_lab_with_its_directory(world):
    out = json.loads(world.cli("labs", "--json").stdout)
    by = {x["name"]: x for x in out}
    assert by["lca"]["state_dir"] == str(world.state_root / "lca")
    assert by["lca"]["network"] == "10.213.151.0/24"
    assert (by["lca"]["nodes_running"], by["lca"]["nodes_total"]) == (1, 1)
    assert by["lca"]["objects"]["bridge"] != by["lcby"]["objects"]["bridge"]
    status = json.loads(world.cli("status", "--lab", "lca", "--json").stdout)
    assert [n["state"] for n in status["nodes"]] == ["running"]


def test_status_from_another_directory_says_where_the_lab_lives(world):
    res = world.cli("status", "--lab", "lca", check=False, env_extra=other_dir(world))
    assert res.returncode == 1
    assert str(world.state_root / "lca") in res.stderr
    untouched(world)


def test_down_from_another_directory_touches_nothing(world):
    res = world.cli("down", "--lab", "lca", check=False, env_extra=other_dir(world))
    assert res.returncode == 1
    assert "lives in" in res.stderr
    assert ssh(prov_of(world, "lca"), "node1", "true").returncode == 0
    assert local.host_sysctl_values()["net.ipv4.ip_forward"] == "1"
    untouched(world)


def test_up_from_another_directory_is_refused(world):
    res = world.cli("up", "--lab", "lca", check=False, env_extra=other_dir(world))
    assert res.returncode == 1
    assert str(world.state_root / "lca") in res.stderr
    assert not (world.root / "elsewhere" / ".clusterlab" / "lca").exists()
    assert ssh(prov_of(world, "lca"), "node1", "true").returncode == 0
    untouched(world)


def test_overlapping_cidrs_started_at_once(world):
    for name in ("lcx", "lcy"):
        world.provider(world.spec(name, 152))
    procs = {
        n: subprocess.Popen(
            world.cli_argv("up", "--lab", n, "--until", "provision"),
            env=world.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in ("lcx", "lcy")
    }
    results = {n: (p.wait(120), p.stderr.read()) for n, p in procs.items()}
    for p in procs.values():
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in results.values())
    assert codes == [0, 1], results
    loser = next(n for n, (rc, _) in results.items() if rc == 1)
    assert "overlaps" in results[loser][1]
    winner = "lcy" if loser == "lcx" else "lcx"
    assert ssh(prov_of(world, winner), "node1", "hostname").stdout.strip() == "node1"
    world.cli("down", "--lab", winner)
    world.cli("down", "--lab", loser)
    untouched(world)


def test_second_command_while_up_runs_is_refused(world):
    first = subprocess.Popen(
        world.cli_argv("up", "--lab", "lca", "--until", "provision"),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = registry.lock_path("lca")
    poll("the lock held", lambda: lock.exists() and lock.read_text().startswith(str(first.pid)))
    first.send_signal(signal.SIGSTOP)  # the first `up` stays inside its work meanwhile
    try:
        for cmd in (["up", "--lab", "lca"], ["down", "--lab", "lca"], ["verify", "--lab", "lca"]):
            res = world.cli(*cmd, check=False)
            assert res.returncode == 1, res.stderr
            assert f"PID {first.pid}" in res.stderr
            assert "up --lab lca" in res.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(120) == 0
    assert ssh(prov_of(world, "lca"), "node1", "true").returncode == 0
    untouched(world)


def test_interrupt_after_a_host_key_heals_by_up(world, sigint_reaches_children):
    spec = world.spec("lcc", 153, disks=["5G"])
    prov = world.provider(spec)
    proc = subprocess.Popen(
        world.cli_argv("up", "--lab", "lcc", "--until", "provision"),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    key = prov.state / "nodes/node1/upper/etc/ssh/ssh_host_ed25519_key"
    poll("the host key", key.exists, 120)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    proc.stderr.close()
    assert "interrupted" in err
    assert "Traceback" not in err
    world.cli("up", "--lab", "lcc", "--until", "provision")
    prov._names = None
    assert ssh(prov, "node1", "test -s /root/.ssh/authorized_keys").returncode == 0
    untouched(world)


def test_killed_nspawn_is_reported_and_restarted(world):
    prov = prov_of(world, "lcc")
    pid = prov.nspawn_pid("node1")
    os.kill(pid, signal.SIGKILL)
    poll("nspawn gone", lambda: prov.nspawn_pid("node1") is None)
    status = json.loads(world.cli("status", "--lab", "lcc", "--json").stdout)
    assert status["nodes"][0]["state"] == "orphaned"
    res = world.cli("verify", "--lab", "lcc", check=False)
    assert res.returncode == 1
    assert "orphaned" in res.stderr
    world.cli("up", "--lab", "lcc", "--until", "provision")
    assert prov.nspawn_pid("node1")
    assert ssh(prov, "node1", "true").returncode == 0
    untouched(world)


def test_corrupt_timings_are_recorded_anew(world):
    prov = prov_of(world, "lcc")
    (prov.state / "timings.json").write_text('{"provision": ')
    res = world.cli("up", "--lab", "lcc", "--until", "provision")
    assert "was damaged" in res.stderr
    assert "Traceback" not in res.stderr
    assert "provision" in json.loads((prov.state / "timings.json").read_text())


def test_unwritable_state_is_one_line_naming_the_path(world):
    prov = prov_of(world, "lcc")
    timings = prov.state / "timings.json"
    subprocess.run(["chattr", "+i", str(timings)], check=True)
    try:
        res = world.cli("up", "--lab", "lcc", "--until", "provision", check=False)
    finally:
        subprocess.run(["chattr", "-i", str(timings)], check=True)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert str(timings) in errors[0]
    assert "Traceback" not in res.stderr
    world.cli("up", "--lab", "lcc", "--until", "provision")


def test_truncated_inventory_fails_the_stage(world):
    prov = prov_of(world, "lcc")
    (prov.state / "hosts.yml").write_text("")
    res = world.cli("prepare", "--lab", "lcc", check=False)
    assert res.returncode == 1
    assert "no host ran it" in res.stderr
    assert not (prov.state / "stages" / "prepare.done").exists()
    world.cli("up", "--lab", "lcc", "--until", "provision")
    assert "node1" in (prov.state / "hosts.yml").read_text()


def test_verify_with_no_stage_recorded_fails(world):
    res = world.cli("verify", "--lab", "lcc", check=False)
    assert res.returncode == 1
    assert "nothing to check" in res.stderr


def test_sigkill_of_down_while_deleting_heals_by_down(world):
    prov = prov_of(world, "lcc")
    junk = prov.state / "junk"
    junk.mkdir()
    for i in range(20000):  # enough for the deletion to take a moment
        (junk / str(i)).write_text("")
    proc = subprocess.Popen(
        world.cli_argv("down", "--lab", "lcc"),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    poll("the state dir moved away", lambda: any(world.state_root.glob(".lcc.removing-*")), 120)
    proc.kill()
    proc.wait(30)
    assert not prov.state.exists()  # nothing a later `up` could take for a node
    world.cli("down", "--lab", "lcc")
    assert not list(world.state_root.glob(".lcc.*"))
    assert "lcc" not in registry.read()
    untouched(world)


def test_host_kernel_and_lab_forwarding(world):
    prov = prov_of(world, "lca")
    res = world.cli("up", "--lab", "lca", "--until", "provision")
    lacking = [m for m in local.STORAGE_MODULES if not local._module_present(m)]
    if lacking:  # said, naming each; never a refusal
        assert f"host kernel modules {', '.join(lacking)} could not be loaded" in res.stderr
    else:
        assert "could not be loaded" not in res.stderr
    for mod in local.HOST_MODULES:
        assert local._module_present(mod)
    out = ssh(prov, "node1", "cat /proc/sys/net/bridge/bridge-nf-call-iptables").stdout
    assert out.strip() in ("0", "1")
    assert "overlay" in Path("/proc/filesystems").read_text()
    table = subprocess.run(
        ["nft", "list", "table", "ip", prov.table], capture_output=True, text=True
    ).stdout
    assert f'iifname "{prov.bridge}" oifname "{prov.bridge}" accept' in table
    assert f'iifname "{prov.bridge}" drop' in table
    # another lab's network does not reach this one through the host
    other = prov_of(world, "lcby")
    res = ssh(other, "node1", "ping -c1 -W1 10.213.151.11", check=False)
    assert res.returncode != 0
    untouched(world)


def test_sigterm_during_up_is_143_and_heals(world):
    spec = world.spec("lcd", 154, nodes=2, disks=["5G"])
    prov = world.provider(spec)
    proc = subprocess.Popen(
        world.cli_argv("up", "--lab", "lcd", "--until", "provision"),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    poll("a node's overlay", (prov.state / "nodes/node1/upper").is_dir, 120)
    proc.terminate()
    assert proc.wait(60) == 143
    err = proc.stderr.read()
    proc.stderr.close()
    assert "interrupted" in err
    assert "Traceback" not in err
    world.cli("up", "--lab", "lcd", "--until", "provision")
    prov._names = None
    assert ssh(prov, "node1", "ping -c1 -W2 10.213.154.12").returncode == 0
    untouched(world)


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check)


def test_docker_forward_drop_is_passed_by_the_labs_own_rules(world):
    """A host with Docker: FORWARD jumps to DOCKER-USER, then drops (Docker's policy; here a
    drop scoped to this lab's bridge, so no other network of the host is disturbed)."""
    if not shutil.which("iptables"):
        pytest.skip("no iptables")
    if (
        subprocess.run(["nft", "list", "table", "ip", "filter"], capture_output=True).returncode
        == 0
    ):
        pytest.skip("the host has an iptables filter table of its own; not touched")
    prov = prov_of(world, "lcd")
    try:
        iptables("-N", "DOCKER-USER")
        iptables("-A", "FORWARD", "-j", "DOCKER-USER")
        iptables("-A", "FORWARD", "-i", prov.bridge, "-j", "DROP")
        world.cli("up", "--lab", "lcd", "--until", "provision")
        rules = iptables("-S", "DOCKER-USER").stdout
        assert f"-i {prov.bridge}" in rules
        assert f"-o {prov.bridge}" in rules
        assert ssh(prov, "node1", "ping -c1 -W2 10.213.154.12").returncode == 0
        for d in ("-i", "-o"):  # without them, the drop takes the lab's traffic
            tag = f"clusterlab {prov.bridge}"
            iptables(
                "-D",
                "DOCKER-USER",
                d,
                prov.bridge,
                "-m",
                "comment",
                "--comment",
                tag,
                "-j",
                "ACCEPT",
            )
        assert ssh(prov, "node1", "ping -c1 -W2 10.213.154.12", check=False).returncode != 0
        world.cli("up", "--lab", "lcd", "--until", "provision")
        assert ssh(prov, "node1", "ping -c1 -W2 10.213.154.12").returncode == 0
        world.cli("down", "--lab", "lcd")
        assert "clusterlab" not in iptables("-S", "DOCKER-USER").stdout
    finally:
        world.cli("down", "--lab", "lcd", check=False)
        subprocess.run(["nft", "delete", "table", "ip", "filter"], capture_output=True)
    untouched(world)


@pytest.mark.parametrize("fs", ["full", "read-only"])
def test_full_or_read_only_disk_is_one_line(world, tmp_path, fs):
    where = tmp_path / fs
    where.mkdir()
    opts = "size=64k" if fs == "full" else "size=64k,ro"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "lcfs", str(where)], check=True)
    try:
        if fs == "full":
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={where / 'fill'}", "bs=4k"], capture_output=True
            )
        res = subprocess.run(
            world.cli_argv("init", "lcq"),
            cwd=where,
            env=world.env(),
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(["umount", str(where)], check=True)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert str(where) in errors[0]
    assert ("No space left" if fs == "full" else "Read-only") in errors[0]
    assert "Traceback" not in res.stderr


def test_interrupted_stage_says_so_keeps_its_log_and_heals(world, sigint_reaches_children):
    prov = prov_of(world, "lca")
    log = prov.state / "logs" / "prepare.log"
    events = log.with_name("prepare.events.jsonl")
    events.unlink(missing_ok=True)  # an earlier run's tasks must not start the interrupt
    proc = subprocess.Popen(
        world.cli_argv("prepare", "--lab", "lca"),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    poll("the first task", lambda: events.exists() and '"task"' in events.read_text(), 120)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    proc.stderr.close()
    assert "interrupted prepare" in err
    assert "FAILED" not in err
    text = log.read_text()
    assert "ansible-playbook" in text
    assert "(interrupted)" in text
    assert not (prov.state / "stages" / "prepare.done").exists()
    world.cli("prepare", "--lab", "lca")
    assert (prov.state / "stages" / "prepare.done").exists()
    untouched(world)
