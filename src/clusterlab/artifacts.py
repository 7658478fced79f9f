"""Every file and container image a lab needs, derived from the tables the stages use.

Files come from the download role's table (roles/common/download/defaults/main.yml: URL,
sha256, destination) in the entries each stage installs; images from the releases table
(Kubernetes images, pause), the download table's `images` of the CNI and Rook manifests,
the Rook roles' defaults (Ceph image, snapshot-controller) and the demos' templates.
`inv artifacts list` prints this list, `inv artifacts fetch` makes a bundle of it, and
`inv up --bundle` refuses a bundle that lacks any of it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from clusterlab import paths, releases
from clusterlab.oses import OSES

DOWNLOAD_TABLE = paths.ROOT / "roles" / "common" / "download" / "defaults" / "main.yml"
CONTAINER_RUNTIME_VARS = paths.ROOT / "roles" / "prepare" / "container_runtime" / "vars"
ROLE_DEFAULTS = {
    "ceph_cluster": paths.ROOT / "roles" / "rook" / "ceph_cluster" / "defaults" / "main.yml",
    "snapshot_controller": paths.ROOT
    / "roles"
    / "rook"
    / "snapshot_controller"
    / "defaults"
    / "main.yml",
}
DEMO_TEMPLATES = Path(__file__).resolve().parent / "demos" / "templates"

# Which download_table entries each stage installs or fetches (the playbooks name the same
# lists; a unit test keeps the two equal). prepare's entries apply only where containerd
# comes from the downloads (decide.yml), the CNI manifest is the lab's plugin.
PREPARE_DOWNLOADS = ("containerd", "runc", "cni_plugins", "crictl")
KUBERNETES_DOWNLOADS = ("kubeadm", "kubelet", "kubectl", "crictl")
ROOK_DOWNLOADS = (
    "rook_crds",
    "rook_common",
    "rook_csi_operator",
    "rook_operator",
    "snapshot_crd_classes",
    "snapshot_crd_contents",
    "snapshot_crd_snapshots",
    "snapshot_controller_rbac",
    "snapshot_controller_setup",
)
# The kubernetes verify layer's probe (tests/infra/test_kubernetes.py runs it on every node).
PROBE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
KUBEADM_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
IMAGE_CALL = re.compile(r"""image\(\s*["']([^"']+)["']\s*\)""")


@dataclass(frozen=True)
class FileArtifact:
    name: str  # the download_table entry
    version: str
    url: str
    sha256: str
    dest: str  # where it goes: a node path, or "controller" for manifests applied from there
    stages: tuple[str, ...]


@dataclass(frozen=True)
class ImageArtifact:
    ref: str  # full upstream reference, registry/repository:tag
    digest: str | None  # pinned manifest digest, where the table pins one
    stages: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def repository(self) -> str:
        return self.ref.split("/", 1)[1].rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


@dataclass(frozen=True)
class Artifacts:
    files: tuple[FileArtifact, ...]
    images: tuple[ImageArtifact, ...]

    def for_stages(self, names: set[str]) -> Artifacts:
        """Only what the named stages (or demos) need."""
        return Artifacts(
            tuple(f for f in self.files if names & set(f.stages)),
            tuple(i for i in self.images if names & set(i.stages)),
        )


def normalize_ref(ref: str) -> str:
    """A full reference: registry host first (docker.io, library/ for official images)."""
    first = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
        ref = "docker.io/" + (ref if "/" in ref else "library/" + ref)
    if ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return ref


@functools.cache
def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@functools.cache
def _jinja() -> jinja2.Environment:
    """Jinja with Ansible's core filters (dirname, basename, default …)."""
    from ansible.plugins.filter.core import FilterModule  # noqa: PLC0415 - slow import

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - YAML values, not HTML
    env.filters.update(FilterModule().filters())
    return env


def _render(value: Any, variables: dict[str, Any]) -> Any:
    """Render a table value the way Ansible would (the table's Jinja uses plain variables)."""
    if isinstance(value, str) and "{{" in value:
        return _jinja().from_string(value).render(**variables).strip()
    if isinstance(value, list):
        return [_render(v, variables) for v in value]
    return value


def _variables(spec: dict) -> dict[str, Any]:
    family = OSES[spec["os"]].family
    version = spec["kubernetes"]["version"]
    return {
        "kube_version": version,
        "clusterlab_kube_release": releases.kube_releases()[version],
        "clusterlab_os_family": family,
        "clusterlab_bin_dir": "/opt/bin" if family == "flatcar" else "/usr/local/bin",
        "artifacts_image_registry": "",  # the list names upstream references
    }


def containerd_from_downloads(spec: dict) -> bool:
    """decide.yml's rule: the distribution's containerd where it has one and Kubernetes ≤ 1.35."""
    source = spec["kubernetes"].get("container_runtime_source", "auto")
    if source != "auto":
        return source == "download"
    family = OSES[spec["os"]].family
    found = CONTAINER_RUNTIME_VARS / f"{family}.yml"
    distro = _yaml(found if found.is_file() else CONTAINER_RUNTIME_VARS / "defaults.yml")
    minor = int(spec["kubernetes"]["version"].split(".")[1])
    return not (distro.get("container_runtime_distro_packages") and minor <= 35)


def _files(spec: dict, variables: dict[str, Any]) -> list[FileArtifact]:
    table = _yaml(DOWNLOAD_TABLE)["download_table"]
    wanted: dict[str, list[str]] = {}
    if containerd_from_downloads(spec):
        for name in PREPARE_DOWNLOADS:
            wanted.setdefault(name, []).append("prepare")
    for name in (*KUBERNETES_DOWNLOADS, f"{spec['kubernetes']['cni']}_manifest"):
        wanted.setdefault(name, []).append("kubernetes")
    if spec["rook"]["enabled"]:
        for name in ROOK_DOWNLOADS:
            wanted.setdefault(name, []).append("rook")
    out = []
    for name, stages in wanted.items():
        entry = table[name]
        out.append(
            FileArtifact(
                name=name,
                version=str(_render(entry["version"], variables)),
                url=_render(entry["url"], variables),
                sha256=_render(entry["sha256"], variables),
                dest=_render(entry["dest"], variables) if "dest" in entry else "controller",
                stages=tuple(stages),
            )
        )
    return out


def _table_images(name: str, variables: dict[str, Any]) -> list[str]:
    return _render(_yaml(DOWNLOAD_TABLE)["download_table"][name].get("images", []), variables)


def _role_image(role: str, var: str, variables: dict[str, Any]) -> str:
    defaults = _yaml(ROLE_DEFAULTS[role])
    # the role's own variables the image line uses (e.g. its tag), then the lab's
    return _render(defaults[var], {**defaults, **variables})


def demo_images(demo: str) -> list[str]:
    """Images a demo's templates run (the image("…") calls of its manifests)."""
    found = []
    for path in sorted((DEMO_TEMPLATES / demo).glob("*.j2")):
        found += IMAGE_CALL.findall(path.read_text())
    return found


def _images(spec: dict, variables: dict[str, Any]) -> list[ImageArtifact]:
    release = variables["clusterlab_kube_release"]
    version = spec["kubernetes"]["version"]
    wanted: dict[str, list[str]] = {}

    def add(ref: str, stage: str) -> None:
        name, at, digest = ref.partition("@")  # a pin by digest stays beside the name
        stages = wanted.setdefault(normalize_ref(name) + at + digest, [])
        if stage not in stages:
            stages.append(stage)

    add(f"registry.k8s.io/pause:{release['pause']}", "prepare")  # containerd's sandbox
    for name in KUBEADM_IMAGES:
        add(f"registry.k8s.io/{name}:v{version}", "kubernetes")
    add(f"registry.k8s.io/etcd:{release['etcd']}", "kubernetes")
    add(PROBE_IMAGE, "kubernetes")
    add(f"registry.k8s.io/coredns/coredns:{release['coredns']}", "kubernetes")
    for ref in _table_images(f"{spec['kubernetes']['cni']}_manifest", variables):
        add(ref, "kubernetes")
    if spec["rook"]["enabled"]:
        for ref in _table_images("rook_operator", variables):
            add(ref, "rook")
        add(_role_image("ceph_cluster", "ceph_cluster_image", variables), "rook")
        add(_role_image("snapshot_controller", "snapshot_controller_image", variables), "rook")
    for demo in spec.get("demos") or []:
        for ref in demo_images(demo):
            add(ref, f"demo:{demo}")
    out = []
    for ref, stages in wanted.items():
        name, _, digest = ref.partition("@")
        out.append(ImageArtifact(name, digest or None, tuple(stages)))
    return out


def lab_artifacts(spec: dict) -> Artifacts:
    """Everything the lab needs across all its stages and demos."""
    variables = _variables(spec)
    return Artifacts(tuple(_files(spec, variables)), tuple(_images(spec, variables)))


def listing(arts: Artifacts) -> str:
    """`inv artifacts list`: files (URL, sha256, where it goes) then images, with stages."""
    lines = [f"files ({len(arts.files)}):"]
    for f in arts.files:
        lines.append(f"  {f.url}")
        lines.append(f"    sha256 {f.sha256}  ->  {f.dest}  [{', '.join(f.stages)}]")
    lines.append(f"images ({len(arts.images)}):")
    for i in arts.images:
        pin = f"@{i.digest}" if i.digest else ""
        lines.append(f"  {i.ref}{pin}  [{', '.join(i.stages)}]")
    return "\n".join(lines)
