"""desilab: DESI DR1 research on modest hardware.

Layers (lower never import higher): ``errors``/``config`` -> ``io``, ``sky`` ->
``store``, ``compute`` -> pipelines (``voids``, ``outflows``, ``anomalies``) -> ``run``,
``service`` -> ``cli``. See docs/architecture.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("desilab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
