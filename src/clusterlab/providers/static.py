"""The static provider."""

from __future__ import annotations

from clusterlab.providers.base import Provider


class StaticProvider(Provider):
    name = "static"


PROVIDER_CLASS = StaticProvider
