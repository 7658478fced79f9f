"""The provider interface."""

from __future__ import annotations

from dataclasses import dataclass

from clusterlab import paths
from clusterlab.inventory import Connection


class ProviderError(Exception):
    """A provider cannot do what was asked; the message says why and what to do."""


@dataclass
class NodeStatus:
    name: str
    state: str  # running | orphaned | stopped | absent | unreachable | reachable
    address: str
    disks: list[str]


class Provider:
    """create(), destroy(), status(); create and destroy are idempotent."""

    name = "base"

    def __init__(self, spec: dict):
        self.spec = spec
        self.lab = spec["name"]
        self.state = paths.state_dir(self.lab)
        self.trust_new_hosts = False  # only the static provider meets hosts it did not make

    def check_user(self) -> None:
        """Refuse a user this provider cannot work as (before any lock or claim)."""

    def claim(self) -> dict:
        """Claim the lab's name on this machine for this state dir (registry.claim)."""
        from clusterlab import registry  # noqa: PLC0415  (registry imports this module)

        return registry.claim(self.spec, self.state)

    def create(self) -> dict[str, Connection]:
        raise ProviderError(f"not implemented yet: provision ({self.name} provider)")

    def destroy(self) -> None:
        raise ProviderError(f"not implemented yet: destroy ({self.name} provider)")

    def status(self) -> list[NodeStatus]:
        raise ProviderError(f"not implemented yet: status ({self.name} provider)")

    def planned_connections(self) -> dict[str, Connection]:
        """Connections as the spec plans them, before anything exists."""
        return {
            n["name"]: Connection(host=n["address"], user=n["user"] or "root", port=n["port"])
            for n in self.spec["nodes"]
        }
