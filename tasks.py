"""Invoke entry point: composes the task collection that the clusterlab package defines."""

from clusterlab.commands import namespace

ns = namespace()
