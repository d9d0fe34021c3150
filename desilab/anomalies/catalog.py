"""The anomaly catalog: FITS + Parquet with documented columns (every score's sign stated).

One row per scored object, ranked by the ensemble p-value (then the ensemble score).
:data:`COLUMN_DOCS` is the datamodel; ``docs/anomalies.md`` renders it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from desilab.io._tables import write_table
from desilab.io.fits import atomic_output

__all__ = ["COLUMN_DOCS", "EXTNAME", "build_catalog", "datamodel_markdown", "write_catalog"]

EXTNAME = "ANOMALIES"

COLUMN_DOCS: dict[str, tuple[str, str]] = {
    "RANK": ("", "1 = most significant (sorted by P_ENSEMBLE, then ENSEMBLE descending)"),
    "TARGETID": ("", "DESI TARGETID"),
    "Z": ("", "redshift used to de-redshift (catalog Z)"),
    "SNR": ("", "median S/N per rest-frame pixel over the weighted pixels"),
    "NPIX_USED": ("", "rest-frame pixels entering the likelihood"),
    "CHI2_PIX": ("", "reconstruction chi2 per used pixel incl. the model-error term; HIGHER = MORE ANOMALOUS"),
    "SCAN": (
        "",
        "matched-filter scan: max over box widths 1-243 px (and 1-3 px on the high-pass residual), difference-of-boxes"
        " shape scans 3-243 px, and positions of abs(sum r)/sqrt(N), normalised per position and width on the"
        " training spectra; HIGHER = MORE ANOMALOUS",
    ),
    "SCAN_KIND": (
        "",
        "which scan gives SCAN: box1 ... box243 (residual/total sigma), hp1, hp3 (high-pass/noise),"
        " dob3 ... dob243 (box minus its two neighbours)",
    ),
    "ELBO": ("", "evidence lower bound per used pixel [nats]; HIGHER = MORE NORMAL"),
    "IFOREST": ("", "Isolation Forest score_samples on the latent means; HIGHER = MORE NORMAL"),
    "ENSEMBLE": (
        "",
        "max over SCAN and -IFOREST of -ln(tail probability among the training spectra; exponential"
        " tail beyond them); HIGHER = MORE ANOMALOUS",
    ),
    "P_CHI2_PIX": ("", "conformal p-value of CHI2_PIX in its S/N x redshift bin; SMALL = ANOMALOUS"),
    "P_SCAN": ("", "conformal p-value of SCAN; SMALL = ANOMALOUS"),
    "P_ELBO": ("", "conformal p-value of -ELBO; SMALL = ANOMALOUS"),
    "P_IFOREST": ("", "conformal p-value of -IFOREST; SMALL = ANOMALOUS"),
    "P_ENSEMBLE": ("", "conformal p-value of ENSEMBLE from its own calibration; SMALL = ANOMALOUS"),
    "Q_ENSEMBLE": (
        "",
        "Benjamini-Hochberg adjusted P_ENSEMBLE (smallest FDR level at which the object is a discovery)",
    ),
    "FLAGGED": ("", "1 when Q_ENSEMBLE <= the run's FDR level (header FDR_Q)"),
    "CLUSTER": ("", "UMAP+HDBSCAN group among flagged objects (-1 = none/noise)"),
    "EXEMPLAR": ("", "1 for the exemplar of its CLUSTER"),
    "REGIONS": ("", "wavelength regions driving the chi2: name, rest and observed centre [A], share of chi2"),
    "CALIB_ROLE": ("", "'train' / 'calibration' / 'test': which split the object belonged to"),
}
"""Column → (unit, description)."""


def build_catalog(cols: dict[str, Any]) -> pa.Table:
    """Arrow table with the :data:`COLUMN_DOCS` columns (in order), ranked, descriptions in field metadata."""
    n = len(cols["TARGETID"])
    order = np.lexsort((-np.nan_to_num(np.asarray(cols["ENSEMBLE"], float), nan=-1e30), np.asarray(cols["P_ENSEMBLE"])))
    arrays, fields = [], []
    for name, (unit, doc) in COLUMN_DOCS.items():
        if name == "RANK":
            v = np.arange(1, n + 1, dtype=np.int32)
        else:
            v = np.asarray(cols[name])[order]
        arr = pa.array(v.tolist() if v.dtype.kind in "OU" else v)
        md = {b"description": doc.encode()}
        if unit:
            md[b"unit"] = unit.encode()
        fields.append(pa.field(name, arr.type, metadata=md))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_catalog(
    table: pa.Table, out_dir: str | os.PathLike[str], keywords: dict[str, Any], stem: str = "desilab-qso-anomalies"
) -> dict[str, Path]:
    """Write ``<stem>.fits`` (HDU ``ANOMALIES``) and ``<stem>.parquet``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = {k: v for k, v in keywords.items() if v is not None}
    fits_path = out / f"{stem}.fits"
    with atomic_output(fits_path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(None, header=[{"name": k, "value": v} for k, v in keys.items()])
        write_table(f, table.replace_schema_metadata(None), EXTNAME, None, units=True)
    pq_path = out / f"{stem}.parquet"
    meta = {b"desilab": json.dumps(keys, sort_keys=True, default=str).encode()}
    with atomic_output(pq_path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd", write_statistics=False)
    return {"fits": fits_path, "parquet": pq_path}


def datamodel_markdown() -> str:
    """The datamodel table (Markdown) for ``docs/anomalies.md``."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| {k} | {u} | {d} |" for k, (u, d) in COLUMN_DOCS.items()]
    return "\n".join(lines)
