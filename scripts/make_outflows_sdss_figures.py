"""Draw ``docs/figures/outflows_spec-*.png/.pdf``: the outflow pipeline's fits of two real SDSS spectra.

The star-forming galaxy ``spec-0266-51602-0107`` (narrow lines vs SPZLINE) and the
broad-line quasar ``spec-0332-52367-0639`` (broad Hβ / Hα, total [O III]), both from
``<shared>/data/real/sdss_spec/``, fitted with the pipeline's defaults
(:func:`desilab.outflows.stage.resources_for`: the shared Fe II templates and, at z < 0.8,
the BC03-MILES host decomposition when the SSP grid is found). Each figure shows the
Hβ+[O III] and Hα+[N II]+[S II] complexes (data − continuum, where the continuum includes
the subtracted stellar host), the chosen model and its components; the title gives the host
share at 5100 Å and total [O III] 4959+5007 vs SPZLINE.

Run: ``.venv/bin/python scripts/make_outflows_sdss_figures.py [SHARED_DIR] [OUT_DIR]``
(defaults ``../shared`` and ``docs/figures``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from desilab.io import read_sdss_spec
from desilab.outflows import figures
from desilab.outflows.catalog import process
from desilab.outflows.stage import resources_for

REPO = Path(__file__).resolve().parents[1]
FILES = ("spec-0266-51602-0107", "spec-0332-52367-0639")


def main(argv: list[str]) -> int:
    shared = Path(argv[0]) if argv else REPO.parent / "shared"
    out = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "figures"
    res = resources_for(shared)
    for stem in FILES:
        spec = read_sdss_spec(shared / "data" / "real" / "sdss_spec" / f"{stem}.fits")
        r = process(spec, res)
        c = r.columns
        zl = {row["LINENAME"]: row["LINEAREA"] for row in spec.extra["spzline"].to_pylist()}
        oiii = c["OIII_5007_FLUX"][0] + c["OIII_4959_FLUX"][0]
        ref = zl["[O_III] 5007"] + zl["[O_III] 4959"]
        host = c["HOST_FRAC5100"][0]
        host_txt = f"host share at 5100 Å {host:.2f}" if host == host else "no host decomposition"
        title = (
            f"SDSS {stem}  z_sys = {c['Z_SYS'][0]:.5f}  ({host_txt}; "
            f"[O III] 4959+5007 = {oiii:.0f} vs SPZLINE {ref:.0f})"
        )
        fig = figures.plot_fit(r, 0, title=title, complexes=("HB_OIII", "HA_NII_SII"))
        for p in figures.save(fig, out / f"outflows_{stem}"):
            print(f"wrote {p}")
        print(
            f"{stem}: HB_OIII {c['HB_OIII_MODEL'][0]}, HA {c['HA_NII_SII_MODEL'][0]}, host {host:.2f}, "
            f"[O III] total {oiii:.1f} vs {ref:.1f} ({oiii / ref - 1:+.1%}), HB_NARROW {c['HB_NARROW_FLUX'][0]:.1f}, "
            f"OIII_5007 {c['OIII_5007_FLUX'][0]:.1f}, HA_NARROW {c['HA_NARROW_FLUX'][0]:.1f}, "
            f"NII_6583 {c['NII_6583_FLUX'][0]:.1f}, SII {c['SII_6716_FLUX'][0]:.1f} {c['SII_6731_FLUX'][0]:.1f}, "
            f"SII_RATIO {c['SII_RATIO'][0]:.3f}, NE_SII {c['NE_SII'][0]:.0f} (limit {c['NE_SII_LIMIT'][0]}), "
            f"OUTFLOW_DBIC {c['OUTFLOW_DBIC'][0]:.1f}, detected {bool(c['OUTFLOW_DETECTED'][0])}, "
            f"HB_BROAD_FWHM {c['HB_BROAD_FWHM'][0]:.0f}, HA_BROAD_FWHM {c['HA_BROAD_FWHM'][0]:.0f}, "
            f"LOGL5100 {c['LOGL5100'][0]:.3f}, LOGLBOL {c['LOGLBOL'][0]:.3f}"
        )
        print("SPZLINE:", {k: round(zl[k], 1) for k in ("H_beta", "[O_III] 5007", "H_alpha", "[N_II] 6583")})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
