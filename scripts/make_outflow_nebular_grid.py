"""Write desilab/outflows/data/nebular_grid.txt: PyNeb emissivity ratios on a (T_e, log n_e) grid.

Run once (PyNeb is a dev dependency): ``python scripts/make_outflow_nebular_grid.py``.
Axes: T_e 5,000–25,000 K in 1,000 K; log n_e 0–6 in 0.05 dex. Rows: diagnostic, T_e, then
the ratio at each log n_e. :func:`desilab.outflows.physical.build_grid` reads it and
refines it in log n_e with a cubic spline.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from desilab.outflows.physical import DIAGNOSTICS, GRID_FILE, GRID_LOGN, GRID_TEMS


def main() -> None:
    import pyneb as pn

    lines = [
        f"# PyNeb {pn.__version__} emissivity ratios; columns: diagnostic T_e[K] then log n_e = "
        + " ".join(f"{x:.2f}" for x in GRID_LOGN)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (el, ion, num, den) in DIAGNOSTICS.items():
            atom = pn.Atom(el, ion)
            n = 10.0**GRID_LOGN
            top = sum(atom.getEmissivity(tem=GRID_TEMS, den=n, wave=w) for w in num)
            bot = sum(atom.getEmissivity(tem=GRID_TEMS, den=n, wave=w) for w in den)
            ratio = np.asarray(top / bot).reshape(GRID_TEMS.size, GRID_LOGN.size)
            for t, row in zip(GRID_TEMS, ratio, strict=True):
                lines.append(f"{name} {t:.0f} " + " ".join(f"{v:.7e}" for v in row))
    Path(GRID_FILE).write_text("\n".join(lines) + "\n")
    print(f"wrote {GRID_FILE}")


if __name__ == "__main__":
    main()
