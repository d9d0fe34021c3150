"""DESI DR1 file formats: readers, writers, golden schemas, validation, download.

Catalog readers return Arrow tables and read only the columns and rows asked for;
spectra come back in one :class:`~desilab.io.spectra.Spectra` container. Writers produce
the exact DR1 layouts (HDU names, TFORM, TUNIT, header keywords) through a temporary
name renamed on success. Names are resolved lazily, so ``import desilab.io`` is cheap.

=====================  =====================================================
product                reader / writer
=====================  =====================================================
zcatalog v1            :func:`read_zcatalog` / :func:`write_zcatalog`
healpix/tile coadd     :func:`read_coadd` / :func:`write_coadd`
redrock                :func:`read_redrock` / :func:`write_redrock`
FastSpecFit v2.1/v3.0  :func:`read_fastspec` / :func:`write_fastspec`
DESIVAST VoidFinder    :func:`read_voidfinder` / :func:`write_voidfinder`
DESIVAST V²            :func:`read_v2` / :func:`write_v2`
VAST galaxy input      :func:`read_vast_galaxies`
QSO catalog, BALCAT    :func:`read_qso_catalog` / :func:`write_qso_catalog`
SDSS spec-lite         :func:`read_sdss_spec`
=====================  =====================================================

``identify(path)`` names a file's product and ``validate(path)`` checks it against its
golden schema (what ``desilab inspect`` prints).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Spectra": "spectra",
    "read_coadd": "coadd",
    "write_coadd": "coadd",
    "read_redrock": "redrock",
    "write_redrock": "redrock",
    "read_zcatalog": "zcatalog",
    "write_zcatalog": "zcatalog",
    "read_fastspec": "fastspecfit",
    "read_fastspec_models": "fastspecfit",
    "write_fastspec": "fastspecfit",
    "read_voidfinder": "desivast",
    "read_v2": "desivast",
    "read_vast_galaxies": "desivast",
    "write_voidfinder": "desivast",
    "write_v2": "desivast",
    "read_qso_catalog": "qso",
    "write_qso_catalog": "qso",
    "read_sdss_spec": "sdss",
    "identify": "validate",
    "describe": "validate",
    "read_table": "fits",
    "read_header": "fits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'desilab.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"desilab.io.{module}"), name)


def __dir__() -> list[str]:
    return __all__
