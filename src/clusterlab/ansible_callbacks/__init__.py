"""Ansible callback plugins of clusterlab (loaded by Ansible from this folder, by path)."""
