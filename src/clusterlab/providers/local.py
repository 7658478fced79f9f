"""The local provider."""

from __future__ import annotations

from clusterlab.providers.base import Provider


class LocalProvider(Provider):
    name = "local"


PROVIDER_CLASS = LocalProvider
