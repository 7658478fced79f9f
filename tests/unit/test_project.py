"""Project wiring: tasks, the clusterlab program, host packages, collections, the spec reference."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements
from clusterlab_cli import run_cli

from clusterlab import ansible, commands, hostprereq, paths, specdoc
from clusterlab.spec import FIELDS, reference_markdown


def task_names(output: str) -> set[str]:
    names = set()
    for line in output.splitlines():
        m = re.match(r"^  (\S+)\s", line)
        if m:
            names.add(m.group(1))
    return names


def test_inv_list_and_clusterlab_help_list_the_same_tasks():
    inv = subprocess.run(
        [ansible.bin_path("inv"), "--list"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cl = subprocess.run(
        [sys.executable, "-m", "clusterlab", "--list"], capture_output=True, text=True, check=True
    )
    helped = subprocess.run(
        [sys.executable, "-m", "clusterlab", "--help"], capture_output=True, text=True, check=True
    )
    expected = {
        "artifacts",
        "init",
        "setup",
        "spec",
        "inventory",
        "up",
        "down",
        "status",
        "labs",
        "ssh",
        "prepare",
        "kubernetes",
        "rook",
        "ceph",
        "kubeconfig",
        "kubectl",
        "manifests",
        "verify",
        "reset",
        "rebuild",
        "demo",
        "lint",
        "test",
    }
    assert task_names(inv.stdout) == expected
    assert task_names(cl.stdout) == expected
    assert expected <= task_names(helped.stdout)


@pytest.mark.parametrize("task", commands.TASKS, ids=lambda t: t.name)
def test_every_flag_has_help(task):
    args = [a for a in task.get_arguments() if a.name not in ("c",)]
    for arg in args:
        assert arg.help, f"{task.name} --{arg.name} has no help text"
    if "lab" in [a.name for a in args]:
        res = subprocess.run(
            [sys.executable, "-m", "clusterlab", "--help", task.name],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "--lab" in res.stdout


def test_demo_refuses_a_lab_that_does_not_carry_it_and_touches_nothing(tmp_path):
    argv = [sys.executable, "-m", "clusterlab", "demo", "storage-types", "--lab", "default"]
    env = dict(os.environ, CLUSTERLAB_STATE=str(tmp_path / "s"))
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 1, res.stderr
    assert "lab default does not carry demo storage-types" in res.stderr
    assert not (tmp_path / "s").exists()


def test_installed_collections_satisfy_requirements():
    req = yaml.safe_load((paths.ROOT / "collections" / "requirements.yml").read_text())
    res = subprocess.run(
        [ansible.bin_path("ansible-galaxy"), "collection", "list", "--format", "json"],
        capture_output=True,
        text=True,
        env=ansible.env(),
        check=True,
    )

    installed: dict[str, str] = {}
    for colls in json.loads(res.stdout).values():
        for name, meta in colls.items():
            installed.setdefault(name, meta["version"])
    for item in req["collections"]:
        assert item["name"] in installed, f"{item['name']} is not installed"
        assert meets_requirements(installed[item["name"]], item["version"]), (
            f"{item['name']} {installed[item['name']]} does not satisfy {item['version']}"
        )


def test_docs_spec_is_the_generated_reference():
    """docs/spec.md is made from spec.FIELDS (every field, type, default, meaning); the
    command prints the same page, so an installed copy (no docs/) has it too."""
    text = (paths.ROOT / "docs" / "spec.md").read_text()
    assert text == specdoc.document(), "regenerate: clusterlab spec --reference > docs/spec.md"
    fields = set(re.findall(r"^\| `([^`]+)` \|", text, re.MULTILINE))
    assert fields == set(FIELDS)
    assert reference_markdown() in text
    res = run_cli("spec", "--reference")
    assert res.returncode == 0
    assert res.stdout == text


def test_ansible_cfg_is_used_by_absolute_path():
    env = ansible.env()
    assert env["ANSIBLE_CONFIG"] == str(paths.ANSIBLE_CFG)
    assert paths.ANSIBLE_CFG.is_absolute()
    assert paths.ANSIBLE_CFG.exists()
    res = subprocess.run(
        [ansible.bin_path("ansible-config"), "dump", "--only-changed"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "profile_tasks" in res.stdout
    assert "DEFAULT_ROLES_PATH" in res.stdout
    conn = subprocess.run(
        [ansible.bin_path("ansible-config"), "dump", "--only-changed", "-t", "connection"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pipelining(" in conn.stdout
    assert "ControlPersist" in conn.stdout


# invoke's core options: not offered by `clusterlab`, refused when given (exit 2), wherever
# they stand on the line. The lab named does not exist, so nothing could be touched anyway.
@pytest.mark.parametrize(
    "argv",
    [
        ["--dry", "down", "--lab", "no-such-lab"],
        ["down", "--lab", "no-such-lab", "--dry"],
        ["--echo", "status", "--lab", "no-such-lab"],
        ["--hide=both", "status", "--lab", "no-such-lab"],
        ["--pty", "status", "--lab", "no-such-lab"],
        ["--warn-only", "status", "--lab", "no-such-lab"],
        ["--config", "x.yml", "status", "--lab", "no-such-lab"],
    ],
    ids=lambda a: next(x for x in a if x.startswith("--") and x != "--lab"),
)
def test_invokes_own_options_are_refused_with_exit_2(argv):
    res = run_cli(*argv)
    flag = next(x for x in argv if x.startswith("--") and x != "--lab").split("=")[0]
    assert res.returncode == 2, res.stderr
    assert f"{flag} is an option of invoke that clusterlab does not offer" in res.stderr
    assert "no lab named" not in res.stderr, "refused before any task ran"


def test_help_offers_the_tools_options_only():
    res = run_cli("--help")
    assert res.returncode == 0
    options = res.stdout.split("Options:", 1)[1].split("Subcommands:", 1)[0]
    for flag in ("--dry", "--echo", "--hide", "--pty", "--warn-only", "--collection"):
        assert flag not in options
    for flag in ("--help", "--version", "--list"):
        assert flag in options
    assert "-l," not in options, "-l is --lab inside the tasks, not a global --list"
    assert "Exit codes: 0 done; 1 a stage or command failed; 2 a usage error" in res.stdout


def test_a_mistyped_task_or_flag_gets_a_suggestion_and_exit_2():
    task = run_cli("stauts")
    assert task.returncode == 2
    assert "unknown task 'stauts'; did you mean 'status'?" in task.stderr
    flag = run_cli("status", "--lba", "x")
    assert flag.returncode == 2
    assert "unknown option '--lba' for task 'status'; did you mean '--lab'?" in flag.stderr
    helped = run_cli("--help", "manifest")
    assert helped.returncode == 2
    assert "did you mean 'manifests'?" in helped.stderr


@pytest.mark.parametrize(
    ("argv", "task"),
    [
        (["ssh", "--help"], "ssh"),
        (["demo", "-h"], "demo"),
        (["--lab", "default", "ssh", "node1", "--help"], "ssh"),
    ],
)
def test_task_help_after_a_task_with_a_positional_argument_is_its_help(argv, task):
    """`ssh --help` prints ssh's help; it ran ssh to a node named --help (exit 1, "not up")."""
    res = run_cli(*argv)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"Usage: clusterlab {task} ")


def test_help_after_double_dash_belongs_to_the_command_run_on_the_node(tmp_path):
    """After `--`, --help is the node command's: ssh runs (and here fails: this state root
    holds no lab up, or another directory owns it), no help is printed."""
    res = run_cli("ssh", "node1", "--", "--help", env_extra={"CLUSTERLAB_STATE": str(tmp_path)})
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.startswith("error: lab default ")


def test_positional_arguments_show_as_positional():
    res = run_cli("--help", "demo")
    assert res.returncode == 0
    assert res.stdout.startswith("Usage: clusterlab demo [OPTIONS] NAME\n")
    assert "--name" not in res.stdout
    assert "NAME " in res.stdout.split("Arguments:", 1)[1]
    art = run_cli("artifacts")
    assert art.returncode == 2
    assert "artifacts: missing ACTION" in art.stderr


def test_demo_without_a_name_says_which_demo_and_how_to_list_them():
    """invoke requires positional arguments; demo's NAME is handled by the task itself."""
    res = run_cli("demo")
    assert res.returncode == 2, res.stderr
    assert "which demo? clusterlab demo NAME (clusterlab demo --list names them)" in res.stderr
    assert "did not receive required positional arguments" not in res.stderr
    listed = run_cli("demo", "--list")
    assert listed.returncode == 0
    assert "storage-types" in listed.stdout
    ssh = run_cli("ssh")  # a required positional: said by the program, with its help
    assert ssh.returncode == 2
    assert "ssh: missing NODE\n  NODE: Node name" in ssh.stderr
    assert "usage: clusterlab ssh [OPTIONS] NODE (clusterlab --help ssh)" in ssh.stderr


def test_apt_argv_installs_exactly_the_list():
    argv = hostprereq.apt_argv(["a", "b"])
    assert argv[:2] == ["apt-get", "install"]
    assert "--no-install-recommends" in argv
    assert argv[-2:] == ["a", "b"]
    assert "--no-install-recommends" in hostprereq.apt_command(["a"])


@pytest.mark.skipif(not hostprereq.can_install(), reason="needs root on Debian/Ubuntu (apt)")
def test_apt_says_what_it_installs_in_one_line_and_logs_its_output(tmp_path):
    """A real apt-get run, of a package that does not exist (nothing is installed): the list
    in one line, progress lines on stderr, nothing on stdout, apt's own output in the log."""
    log = tmp_path / "apt.log"
    code = (
        "import sys; from pathlib import Path; from clusterlab import hostprereq; "
        "hostprereq.install(['clusterlab-no-such-package'], 'a test', Path(sys.argv[1]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(log)], capture_output=True, text=True, check=True
    )
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[0] == "installing with apt for a test: clusterlab-no-such-package"
    assert all(re.match(r"^(==> apt-get|ok apt-get|FAILED apt-get)", x) for x in lines[1:]), lines
    assert lines[-1].startswith("FAILED apt-get install")
    text = log.read_text()
    assert "$ apt-get install -y -q --no-install-recommends clusterlab-no-such-package" in text
    assert "Unable to locate package clusterlab-no-such-package" in text


def test_ci_installs_nothing_but_python3_venv_and_runs_the_readme_commands():
    ci = (paths.ROOT / ".ci" / "run").read_text()
    installs = re.findall(r"apt-get install [^&\n]*", ci)
    assert installs == ["apt-get install -y python3-venv "]
    assert "inv test" in ci
    readme = (paths.ROOT / "README.md").read_text()
    assert "apt-get update && apt-get install -y python3-venv && python3 -m venv .venv" in readme


def test_the_test_packages_are_debian_packages():
    """Each package of the suite's list is known to apt here (a typo would only show as an
    apt failure on a fresh machine)."""
    if not shutil.which("apt-cache"):
        pytest.skip("no apt-cache on this machine")
    res = subprocess.run(
        ["apt-cache", "policy", *hostprereq.TEST_PACKAGES],
        capture_output=True,
        text=True,
        check=True,
    )
    known = set(re.findall(r"^(\S+):$", res.stdout, re.MULTILINE))
    assert sorted(set(hostprereq.TEST_PACKAGES) - known) == []


# Pages of docs/ that other work writes; the README links them before they land.
DOCS_WRITTEN_ELSEWHERE = {"docs/lifecycle.md", "docs/upstream-notes.md"}


def test_readme_is_a_quick_start_with_an_index_of_docs():
    text = (paths.ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = set(re.findall(r"\]\((docs/[^)#]+)\)", text))
    for link in links - DOCS_WRITTEN_ELSEWHERE:
        assert (paths.ROOT / link).is_file(), link
    pages = {f"docs/{p.name}" for p in (paths.ROOT / "docs").glob("*.md")}
    assert sorted(pages - links - DOCS_WRITTEN_ELSEWHERE) == [], "docs/ pages the README omits"
    quick = text.split("## Quick start with pip", 1)[1].split("\n## ", 1)[0]
    for step in ("clusterlab init", "clusterlab spec", "clusterlab up", "clusterlab down"):
        assert step in quick
    assert "inv down" in text.split("## Quick start from a checkout", 1)[1].split("\n## ", 1)[0]
    assert "inv demo " in text


USER_DOCS = (
    "README.md",
    "docs/commands.md",
    "docs/spec.md",
    "docs/providers.md",
    "docs/stages.md",
    "docs/demos.md",
    "docs/offline.md",
    "docs/reset.md",
    "docs/security.md",
)


@pytest.mark.parametrize("page", USER_DOCS)
def test_user_docs_hold_no_development_notes(page):
    """How the tool was built and tested, and what "this machine" has, is for
    docs/development.md; user pages describe the tool."""
    text = (paths.ROOT / page).read_text()
    for note in ("this machine", "Proven here", "proven here", "What was proven", "Measured on"):
        assert note not in text, f"{page}: {note!r}"


def test_a_mistyped_lab_gets_the_closest_name_and_exit_2(tmp_path):
    env = {"CLUSTERLAB_STATE": str(tmp_path / "state")}
    for argv in (["status", "--lab", "defualt"], ["--lab", "defualt", "status"]):
        res = run_cli(*argv, env_extra=env)
        assert res.returncode == 2, res.stderr
        assert "no lab named 'defualt'; did you mean 'default'?" in res.stderr
        assert "`clusterlab init defualt` makes one" in res.stderr
    assert not (tmp_path / "state").exists()


def test_lab_given_before_the_task_is_the_tasks_lab():
    res = run_cli("--lab", "meetup-pvc", "spec")
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout)["name"] == "meetup-pvc"
    own = run_cli("--lab", "meetup-pvc", "spec", "--lab", "meetup-host")
    assert yaml.safe_load(own.stdout)["name"] == "meetup-host", "the task's own --lab wins"
