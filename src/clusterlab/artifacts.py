"""Every file and container image a lab needs, derived from the variables the stages use.

Those variables are resolved by Ansible itself (playbooks/artifact-vars.yml on the controller:
the lab's inventory, its inventories/<lab>/group_vars/ — which win over the spec — and the
roles' defaults and vars), so a group_vars override of container_runtime_source,
kube_network_plugin, kube_version or the Ceph image changes the list as it changes the stages.
Files come from the download role's table (URL, sha256, destination) in the entries each stage
installs; images from the release table (Kubernetes images, pause), the download table's
`images` of the CNI and Rook manifests, the Rook roles' image variables and the demos'
templates. The resolved variables are cached per lab and inputs under
~/.cache/clusterlab/artifact-vars/.
`inv artifacts list` prints this list, `inv artifacts fetch` makes a bundle of it, and
`inv up --bundle` refuses a bundle that lacks any of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusterlab import paths

DOWNLOAD_TABLE = paths.ROOT / "roles" / "common" / "download" / "defaults" / "main.yml"
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


VARS_PLAYBOOK = paths.PLAYBOOKS / "artifact-vars.yml"


class ArtifactError(ValueError):
    """The list cannot name an artifact as a bundle could serve it (an image pinned by digest)."""


def _inputs_digest(hosts_yaml: str, user_vars: Path) -> str:
    """What the resolved variables depend on: the inventory, the user's group_vars, the
    playbook and every role's defaults and vars."""
    digest = hashlib.sha256(hosts_yaml.encode())
    files = [VARS_PLAYBOOK, *sorted(paths.ROOT.glob("roles/**/defaults/*.yml"))]
    files += sorted(paths.ROOT.glob("roles/**/vars/*.yml"))
    files += sorted(p for p in user_vars.rglob("*") if p.is_file()) if user_vars.is_dir() else []
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def stage_vars(spec: dict) -> dict[str, Any]:
    """The variables the stages will use for this lab (see playbooks/artifact-vars.yml)."""
    # ansible and inventory import serve and bundle, which import this module
    from clusterlab import ansible, inventory  # noqa: PLC0415
    from clusterlab.providers import get_provider  # noqa: PLC0415

    planned = copy.deepcopy(spec)
    # Upstream references, and no bundle: what a lab needs does not depend on where it is served
    # from (and the bundle's mirror variables are themselves derived from this list).
    planned["artifacts"] = {**planned["artifacts"], "bundle": None, "image_registry": None}
    inv = inventory.render(planned, get_provider(spec).planned_connections())
    hosts_yaml = yaml.safe_dump(inv, sort_keys=True)
    user_vars = paths.lab_dir(spec["name"]) / "group_vars"
    cache = (
        paths.cache_root()
        / "artifact-vars"
        / (f"{spec['name']}-{_inputs_digest(hosts_yaml, user_vars)}.json")
    )
    if cache.is_file():
        return json.loads(cache.read_text())
    with tempfile.TemporaryDirectory(prefix="clusterlab-artifact-vars-") as tmp:
        work = Path(tmp)
        (work / "hosts.yml").write_text(hosts_yaml)
        if user_vars.is_dir():  # the user's overrides apply here as in the stages
            (work / "group_vars").symlink_to(user_vars.resolve())
        out = work / "vars.json"
        try:
            ansible.run_playbook(
                VARS_PLAYBOOK,
                work / "hosts.yml",
                work / "artifact-vars.log",
                extra_vars={
                    "artifact_vars_out": str(out),
                    "ansible_python_interpreter": sys.executable,
                },
            )
        except ansible.AnsibleError as exc:
            detail = str(exc).partition("\n")[2] or str(exc)
            raise ansible.AnsibleError(
                f"cannot resolve the variables of lab {spec['name']} (its group_vars?):\n{detail}"
            ) from exc
        resolved = json.loads(out.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_cache = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp_cache.write_text(json.dumps(resolved, sort_keys=True))
    tmp_cache.replace(cache)
    return resolved


def containerd_from_downloads(variables: dict[str, Any]) -> bool:
    """decide.yml's rule, as Ansible resolved it for the lab."""
    return variables["container_runtime_source"] == "download"


def _files(variables: dict[str, Any]) -> list[FileArtifact]:
    table = variables["download_table"]
    wanted: dict[str, list[str]] = {}
    if containerd_from_downloads(variables):
        for name in PREPARE_DOWNLOADS:
            wanted.setdefault(name, []).append("prepare")
    for name in (*KUBERNETES_DOWNLOADS, f"{variables['cni_plugin']}_manifest"):
        wanted.setdefault(name, []).append("kubernetes")
    if variables["rook_enabled"]:
        for name in ROOK_DOWNLOADS:
            wanted.setdefault(name, []).append("rook")
    out = []
    if variables["clusterlab_os_family"] == "flatcar":
        # Flatcar has no Python: bootstrap_os unpacks this PyPy before anything else runs,
        # from the lab's mirror when it has one (python-flatcar.yml).
        pypy = variables["flatcar_pypy"]
        url = str(pypy["url"]).strip()
        out.append(
            FileArtifact(
                name="flatcar_pypy",
                version=url.rsplit("/", 1)[-1],
                url=url,
                sha256=str(pypy["sha256"]).strip(),
                dest="/opt/pypy3",
                stages=("prepare",),
            )
        )
    for name, stages in wanted.items():
        entry = table[name]
        out.append(
            FileArtifact(
                name=name,
                version=str(entry["version"]),
                url=str(entry["url"]).strip(),
                sha256=str(entry["sha256"]).strip(),
                dest=str(entry["dest"]).strip() if "dest" in entry else "controller",
                stages=tuple(stages),
            )
        )
    return out


def _table_images(name: str, variables: dict[str, Any]) -> list[str]:
    return [str(i).strip() for i in variables["download_table"][name].get("images", [])]


def demo_images(demo: str) -> list[str]:
    """Images a demo's templates run (the image("…") calls of its manifests)."""
    found = []
    for path in sorted((DEMO_TEMPLATES / demo).glob("*.j2")):
        found += IMAGE_CALL.findall(path.read_text())
    return found


def _images(variables: dict[str, Any]) -> list[ImageArtifact]:
    release = variables["clusterlab_kube_release"]
    version = variables["kube_version"]
    wanted: dict[str, list[str]] = {}

    def add(ref: str, stage: str) -> None:
        if "@" in ref:
            # `artifacts fetch` copies one architecture (a manifest with another digest) and the
            # lab's registry serves it by tag; containerd would ask for the pinned index digest
            # and miss. Refused rather than served wrong.
            raise ArtifactError(
                f"{ref} ({stage}) is pinned by digest: offline bundles serve images by tag only; "
                "pin it by tag"
            )
        stages = wanted.setdefault(normalize_ref(ref), [])
        if stage not in stages:
            stages.append(stage)

    add(f"registry.k8s.io/pause:{release['pause']}", "prepare")  # containerd's sandbox
    for name in KUBEADM_IMAGES:
        add(f"registry.k8s.io/{name}:v{version}", "kubernetes")
    add(f"registry.k8s.io/etcd:{release['etcd']}", "kubernetes")
    add(PROBE_IMAGE, "kubernetes")
    add(f"registry.k8s.io/coredns/coredns:{release['coredns']}", "kubernetes")
    for ref in _table_images(f"{variables['cni_plugin']}_manifest", variables):
        add(ref, "kubernetes")
    if variables["rook_enabled"]:
        for ref in _table_images("rook_operator", variables):
            add(ref, "rook")
        add(variables["ceph_cluster_image"].strip(), "rook")
        add(variables["snapshot_controller_image"].strip(), "rook")
    for demo in variables["demos"]:
        for ref in demo_images(demo):
            add(ref, f"demo:{demo}")
    out = []
    for ref, stages in wanted.items():
        name, _, digest = ref.partition("@")
        out.append(ImageArtifact(name, digest or None, tuple(stages)))
    return out


def lab_artifacts(spec: dict) -> Artifacts:
    """Everything the lab needs across all its stages and demos."""
    variables = stage_vars(spec)
    return Artifacts(tuple(_files(variables)), tuple(_images(variables)))


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
