"""clusterlab: reproducible Kubernetes storage labs."""

__version__ = "0.1.0"
