"""Regenerate ``desilab/sample/data/nebular_ratios.txt`` with PyNeb.

The sample-sky quasar generator sets its [SII] and [OII] doublet ratios from a known
electron density and its [OIII] 4363 strength from a known electron temperature. It
reads these ratios from a small table so that generation does not import PyNeb
(4 s per worker process) and does not depend on it; this script is how the table was
made, and ``tests/sample/test_quasar_spectra.py`` checks it against PyNeb when PyNeb is
installed.

Run: ``.venv/bin/python scripts/make_nebular_tables.py``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyneb as pn

OUT = Path(__file__).resolve().parents[1] / "desilab" / "sample" / "data" / "nebular_ratios.txt"

LOG_NE = np.round(np.arange(0.0, 6.0001, 0.05), 2)
TEMS = np.arange(5000.0, 30000.1, 500.0)
T_LOW = 1.0e4  # low-ionisation zone ([SII], [OII])


def main() -> None:
    s2 = pn.Atom("S", 2)
    o2 = pn.Atom("O", 2)
    o3 = pn.Atom("O", 3)
    den = 10.0**LOG_NE
    sii = s2.getEmissivity(T_LOW, den, wave=6716) / s2.getEmissivity(T_LOW, den, wave=6731)
    oii = o2.getEmissivity(T_LOW, den, wave=3729) / o2.getEmissivity(T_LOW, den, wave=3726)
    lines = [
        f"# Nebular line ratios computed with PyNeb {pn.__version__} (default atomic data).",
        "# Block 1: log10(n_e / cm^-3), [SII] 6716/6731, [OII] 3729/3726 (air labels) at T_e = 1e4 K.",
        "# Block 2: T_e [K] rows x log10 n_e columns (0..6 step 0.5): [OIII] (4959+5007)/4363.",
        "# Regenerate with scripts/make_nebular_tables.py; do not edit by hand.",
        "BLOCK DOUBLETS",
    ]
    for x, a, b in zip(LOG_NE, sii, oii, strict=True):
        lines.append(f"{x:.2f} {a:.6f} {b:.6f}")
    lognes = np.arange(0.0, 6.0001, 0.5)
    lines.append("BLOCK OIII " + " ".join(f"{x:.1f}" for x in lognes))
    for tem in TEMS:
        e4363 = o3.getEmissivity(tem, 10.0**lognes, wave=4363)
        e5007 = o3.getEmissivity(tem, 10.0**lognes, wave=5007)
        e4959 = o3.getEmissivity(tem, 10.0**lognes, wave=4959)
        ratio = (e4959 + e5007) / e4363
        lines.append(f"{tem:.0f} " + " ".join(f"{r:.5f}" for r in ratio))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
