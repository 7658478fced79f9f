"""An adversarial corpus of lab specs: every string field × every injection form a stranger's
lab.yml could carry (Jinja, newlines and control characters, shell metacharacters, '..',
absolute and relative paths, YAML breaks, URL schemes). Each is refused with the field's
path, exit 2, before anything exists: no state directory, no link, no machine.
"""

from __future__ import annotations

import pytest

from clusterlab.spec import SpecError, normalize
from conftest import with_value

FILE = "/tmp/clusterlab-td-pwned"

FORMS = {
    "jinja-pipe": "x{{ lookup('pipe','id > " + FILE + "') }}",
    "jinja-stmt": "x{% if true %}y{% endif %}",
    "jinja-comment": "x{# c #}",
    "newline-doc": "x\n---\nkind: Namespace",
    "newline-key": "x\nProxyCommand touch " + FILE,
    "crlf": "x\r\ny",
    "nul": "x\x00y",
    "escape": "x\x1b[31m",
    "line-separator": "x\u2028y",
    "shell-subst": "x$(id>" + FILE + ")",
    "shell-backtick": "x`id`",
    "shell-semicolon": "x;id",
    "shell-space": "x y",
    "quote-single": "x'y",
    "quote-double": 'x"y',
    "yaml-mapping": "x: y",
    "yaml-comment": "x #y",
    "yaml-flow": "{x: y}",
    "dotdot": "../../etc/passwd",
    "abs-path": "/etc/passwd",
    "rel-path": "some/where",
    "url-file": "file:///etc/passwd",
    "url-ftp": "ftp://mirror.example/x",
    "url-javascript": "javascript:alert(1)",
}
EVERYWHERE = {
    k for k in FORMS if k.startswith(("jinja", "newline", "crlf", "nul", "escape", "line"))
}

# field path in the spec -> (base spec, forms that are valid data for that field)
FIELDS = {
    "name": ("local", set()),
    "nodes.name_prefix": ("local", set()),
    "nodes.disks[0].size": ("local", set()),
    "nodes[0].name": ("static", set()),
    "nodes[0].user": ("static", set()),
    "nodes[0].key_file": ("static", {"abs-path"}),
    "nodes[0].address": ("static", set()),
    "nodes[0].disks[0].device": ("static", set()),
    "nodes[0].roles[0]": ("static", set()),
    "network.cidr": ("local", set()),
    "kubernetes.version": ("local", set()),
    "kubernetes.pod_cidr": ("local", set()),
    "kubernetes.service_cidr": ("local", set()),
    "kubernetes.cni": ("local", set()),
    "rook.version": ("local", set()),
    "rook.mode": ("local", set()),
    # a Go regex on kernel names: $ ( ) | are regex syntax here, and the value only ever reaches Python's re
    # and YAML through a serializer
    "rook.device_filter": ("local", {"shell-subst"}),
    "rook.storage_class": ("local", set()),
    "rook.data_dir_host_path": ("local", set()),
    "artifacts.cache_dir": ("local", {"abs-path"}),
    "artifacts.mirror_url": ("local", set()),
    "artifacts.image_registry": ("local", {"rel-path"}),
    "artifacts.bundle": ("local", {"abs-path", "rel-path"}),
    "vagrant.box": ("vagrant", {"rel-path"}),
    "demos[0]": ("local", set()),
    "provider": ("local", set()),
    "os": ("local", set()),
}
CASES = [
    pytest.param(field, form, id=f"{field}-{form}")
    for field, (_, valid) in FIELDS.items()
    for form in FORMS
    if form not in valid
]


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(SpecError) as exc:
        normalize(raw)
    return exc.value.problems


@pytest.mark.parametrize(("field", "form"), CASES)
def test_every_field_refuses_every_injection_form(field, form):
    base, _ = FIELDS[field]
    if field == "rook.storage_class":  # only read in pvc mode
        raw = with_value(base, "rook.mode", "pvc")
        raw["rook"]["storage_class"] = FORMS[form]
    else:
        raw = with_value(base, field, FORMS[form])
    found = problems_of(raw)
    mine = [p for p in found if p.startswith(f"{field}: ")]
    assert mine, f"{field} = {FORMS[form]!r} not refused at its path: {found}"
    if form in EVERYWHERE:
        assert any("template markup" in p or "control character" in p for p in mine), mine


@pytest.mark.parametrize("field", list(FIELDS))
def test_each_field_has_a_valid_value_the_corpus_is_measured_against(field):
    """The corpus is meaningful only if the bases pass: one spec per base, unchanged."""
    base, _ = FIELDS[field]
    normalize(with_value(base, "name", f"td{base}"))


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/var",
        "/usr",
        "/home",
        "/root",
        "/boot",
        "/opt",
        "/var/lib",
        "/srv",
        "/tmp",
        "/var/../etc",
        "//etc",
        "/etc/",
        "/var/lib/./",
        "/data",
        "/etc/rook",
        "/usr/lib/rook",
        "/proc/rook",
        "/dev/rook",
        "/var/lib/kubelet",
        "/run/rook",
    ],
)
def test_data_dir_host_path_must_be_rooks_own_directory(path):
    found = problems_of(with_value("local", "rook.data_dir_host_path", path))
    assert any(p.startswith("rook.data_dir_host_path: ") for p in found), found


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/var/lib/rook", "/var/lib/rook"),
        ("/var/lib/rook/", "/var/lib/rook"),
        ("/srv//rook", "/srv/rook"),
        ("/data/rook", "/data/rook"),
    ],
)
def test_data_dir_host_path_is_normalised(path, normal):
    spec = normalize(with_value("local", "rook.data_dir_host_path", path))
    assert spec["rook"]["data_dir_host_path"] == normal


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodes[0].disks[0].device", "/dev/sdb$(id>/tmp/x)"),
        ("nodes[0].disks[0].device", "/dev/../etc/passwd"),
        ("nodes[0].disks[0].device", "/dev/"),
        ("nodes[0].disks[0].device", "/dev/sd b"),
        ("nodes[0].user", "root\n  ProxyCommand touch /tmp/x"),
        ("nodes[0].user", "-oProxyCommand=x"),
        ("nodes[0].key_file", "~root/.ssh/id"),
        ("nodes[0].key_file", "/k ey"),
        ("artifacts.mirror_url", "http://mirror.example/x?y={{z}}"),
        ("artifacts.mirror_url", "http://mirror.example/a b"),
        ("artifacts.mirror_url", "https://user@mirror.example/"),
        ("artifacts.image_registry", "mirror.example/UPPER"),
        ("artifacts.image_registry", "https://mirror.example"),
        ("rook.version", "v1.20.6; id"),
        ("rook.version", "1.20.6"),
        ("rook.storage_class", "Local_Storage"),
    ],
)
def test_neighbours_of_the_reported_cases(field, value):
    base = "static" if field.startswith("nodes[0]") else "local"
    raw = with_value(base, field, value)
    if field == "rook.storage_class":
        raw["rook"]["mode"] = "pvc"
    found = problems_of(raw)
    assert any(p.startswith(f"{field}: ") for p in found), found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodes[0].disks[0].device", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"),
        ("nodes[0].disks[0].device", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"),
        ("nodes[0].disks[0].device", "/dev/nvme0n1"),
        ("nodes[0].user", "ci-runner.2"),
        ("nodes[0].key_file", "/root/.ssh/lab_key"),
        ("artifacts.mirror_url", "http://10.213.170.1:8090/files"),
        ("artifacts.mirror_url", "https://[fd00::1]:8443/"),
        ("artifacts.image_registry", "10.213.170.1:5000"),
        ("artifacts.image_registry", "mirror.example/k8s-images"),
        ("rook.device_filter", "^sd[b-d]$"),
        ("rook.device_filter", "^(vd|sd)[b-z]{1,2}$"),
        ("rook.version", "v1.20.6"),
    ],
)
def test_ordinary_values_still_pass(field, value):
    base = "static" if field.startswith("nodes[0]") else "local"
    normalize(with_value(base, field, value))


CLI_CASES = [
    ("rook.version", FORMS["jinja-pipe"]),
    ("rook.data_dir_host_path", "/var/lib/rook\n---\nkind: Namespace"),
    ("rook.data_dir_host_path", "/"),
    ("artifacts.mirror_url", "file:///etc/passwd"),
    ("artifacts.image_registry", "x{{ 7*7 }}"),
    ("nodes.name_prefix", "n$(id>" + FILE + ")"),
    ("network.cidr", "10.213.170.0/24\nx"),
]


@pytest.mark.parametrize(
    ("field", "value"), CLI_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CLI_CASES)]
)
@pytest.mark.parametrize("command", ["spec", "manifests", "up"])
def test_the_command_line_refuses_before_creating_anything(
    field, value, command, project, untouched_host
):
    """`spec`, `manifests` (documented as touching no node) and `up` all stop at the spec:
    exit 2, the field path on stderr, no state directory, no link, no machine, no FILE."""
    raw = with_value("local", field, value)
    project.write(raw)
    args = [command, "--lab", raw["name"]]
    if command == "manifests":
        args += ["--out", str(project.root / "out")]
    res = project.cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert f"{field}: " in res.stderr, res.stderr
    assert project.created() == [], project.created()
    assert not __import__("os").path.exists(FILE)


def test_init_validates_the_name_before_using_it(project):
    res = project.cli("init", "ok #/../../x")
    assert res.returncode == 2, res.stderr
    assert "not a valid lab name" in res.stderr
    assert project.created() == []
    assert not (project.root / "x").exists()
    assert not (project.root.parent / "x").exists()
    res = project.cli("init", "tdok", "--from", "../../etc")
    assert res.returncode == 2, res.stderr
    assert not (project.root / "inventories" / "tdok").exists()
