"""Ansible filters over clusterlab.rook for the operator's upstream manifests.

The controller runs Ansible from the virtualenv clusterlab is installed in, so the package
imports here as in the CLI.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from clusterlab import rook


def clusterlab_rook_crd_names(texts: str | list[str]) -> list[str]:
    """Manifest text (or a list of them) | clusterlab_rook_crd_names -> the names of its CRDs."""
    try:
        if isinstance(texts, str):
            return rook.crd_names(texts)
        return [name for text in texts for name in rook.crd_names(str(text))]
    except rook.RookError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def clusterlab_rook_without_settings(text: str, keys: list[str]) -> str:
    """operator.yaml text | clusterlab_rook_without_settings(keys) -> the same without
    those keys in the operator settings ConfigMap (the lab applies them itself)."""
    try:
        return rook.without_settings(str(text), [str(k) for k in keys])
    except rook.RookError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {
            "clusterlab_rook_crd_names": clusterlab_rook_crd_names,
            "clusterlab_rook_without_settings": clusterlab_rook_without_settings,
        }
