"""Operating systems a lab can run, and which providers can run them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OsInfo:
    name: str
    family: str  # debian | redhat | flatcar | fedora_coreos
    user: str  # default SSH user on the provider's images
    suite: str = ""  # debootstrap suite (Debian family, local provider)
    vagrant_box: str = ""  # box name; empty: no Vagrant box exists
    vagrant_box_url: str = ""  # box metadata URL where the box is not on the public catalogue


OSES: dict[str, OsInfo] = {
    info.name: info
    for info in (
        OsInfo("debian12", "debian", "vagrant", suite="bookworm", vagrant_box="debian/bookworm64"),
        OsInfo("debian13", "debian", "vagrant", suite="trixie", vagrant_box="debian/trixie64"),
        OsInfo("ubuntu2404", "debian", "vagrant", vagrant_box="bento/ubuntu-24.04"),
        OsInfo("centos-stream9", "redhat", "vagrant", vagrant_box="bento/centos-stream-9"),
        OsInfo("rocky9", "redhat", "vagrant", vagrant_box="generic/rocky9"),
        OsInfo("alma9", "redhat", "vagrant", vagrant_box="almalinux/9"),
        OsInfo(
            "flatcar",
            "flatcar",
            "core",
            vagrant_box="flatcar-stable",
            vagrant_box_url="https://stable.release.flatcar-linux.net/amd64-usr/current/flatcar_production_vagrant.json",
        ),
        OsInfo("fedora-coreos", "fedora_coreos", "core"),
    )
}


def providers_for(os_name: str) -> list[str]:
    """Providers that can run this OS."""
    info = OSES[os_name]
    out = []
    if info.family == "debian" and info.suite:
        out.append("local")
    if info.vagrant_box:
        out.append("vagrant")
    out.append("static")
    return out
