"""Providers create and destroy a lab's nodes. One small interface, three implementations."""

from __future__ import annotations

from importlib import import_module

from clusterlab.providers.base import NodeStatus, Provider, ProviderError

__all__ = ["NodeStatus", "Provider", "ProviderError", "get_provider"]


def get_provider(spec: dict) -> Provider:
    module = import_module(f"clusterlab.providers.{spec['provider']}")
    return module.PROVIDER_CLASS(spec)
