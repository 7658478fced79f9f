"""The vagrant provider."""

from __future__ import annotations

from clusterlab.providers.base import Provider


class VagrantProvider(Provider):
    name = "vagrant"


PROVIDER_CLASS = VagrantProvider
