"""clusterlab: reproducible Kubernetes storage labs."""

from clusterlab import yamltags as _yamltags  # noqa: F401  (the !unsafe tag in yaml.safe_*)

__version__ = "0.1.0"
