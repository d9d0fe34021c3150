"""The sample-sky quasars end to end: files in the DR1 layout, catalogs, truth, determinism.

One generation of 300 quasars (serial, files written) is shared by most tests; a second
one with two worker processes and a third without spectra check that neither the worker
count nor ``--no-spectra`` changes anything. Stated tolerances are in each test.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from desilab.compute import LocalExecutor
from desilab.errors import ConfigError, InputError
from desilab.sample import builtin_templates as bt
from desilab.sample.qso_population import draw_quasar
from desilab.sample.quasars import (
    QSO_CATALOG_NAME,
    QuasarConfig,
    coadd_path,
    generate_quasars,
    simulate_spectra,
)

SEED = 20240613
N = 300


def _col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_pylist())


@pytest.fixture(scope="module")
def run_serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("qso_serial")
    sample = generate_quasars(QuasarConfig(n_quasars=N), SEED, out, qso_catalog_path=out / QSO_CATALOG_NAME)
    return out, sample


@pytest.fixture(scope="module")
def run_parallel(tmp_path_factory):
    out = tmp_path_factory.mktemp("qso_parallel")
    with LocalExecutor(2) as ex:
        sample = generate_quasars(
            QuasarConfig(n_quasars=N), SEED, out, executor=ex, qso_catalog_path=out / QSO_CATALOG_NAME
        )
    return out, sample


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Tables equal bit for bit (NaN == NaN), via their Arrow IPC serialisation."""

    def ipc(t: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as writer:
            writer.write_table(t)
        return sink.getvalue().to_pybytes()

    return ipc(a) == ipc(b)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.fits"))}


# --- files -------------------------------------------------------------------------------


def test_tree_layout_validate_and_desispec(run_serial):
    from desispec.io import read_spectra

    from desilab.io.validate import validate
    from desilab.sky.healpix import radec_to_healpix

    out, sample = run_serial
    coadds = sorted(out.rglob("coadd-*.fits"))
    assert len(coadds) == len(sample.pixels) >= 3
    zcat_z = dict(zip(_col(sample.zcatalog, "TARGETID"), _col(sample.zcatalog, "Z"), strict=True))
    nspec = 0
    for path in coadds:
        hpx = int(path.parent.name)
        assert path == coadd_path(out, sample.config, hpx)
        assert path.parent.parent.name == str(hpx // 100)
        assert path.relative_to(out).parts[:4] == ("iron", "healpix", "main", "dark")
        rr = path.with_name(path.name.replace("coadd-", "redrock-"))
        for f in (path, rr):
            errors = [p for p in validate(f) if p.severity == "error"]
            assert not errors, errors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp = read_spectra(str(path))
        n = sp.num_spectra()
        nspec += n
        for arm, (w0, w1, npix) in bt.ARMS.items():
            assert sp.wave[arm].size == npix and sp.wave[arm][0] == w0 and sp.wave[arm][-1] == pytest.approx(w1)
            assert sp.resolution_data[arm].shape == (n, 11, npix)
            assert np.all(np.isfinite(sp.flux[arm])) and np.all(sp.ivar[arm] >= 0)
        fm = sp.fibermap
        assert np.all(radec_to_healpix(np.asarray(fm["TARGET_RA"]), np.asarray(fm["TARGET_DEC"])) == hpx)
        assert sp.meta["HPXPIXEL"] == hpx and sp.meta["QSOTMPL"] == "builtin"
        import fitsio

        red = fitsio.read(str(rr), ext="REDSHIFTS")
        assert np.array_equal(red["TARGETID"], np.asarray(fm["TARGETID"]))
        assert np.allclose(red["Z"], [zcat_z[t] for t in red["TARGETID"]])
    assert nspec == N


def test_qso_catalog_and_zcatalog_files(run_serial, tmp_path):
    from desilab.io.qso import read_qso_catalog
    from desilab.io.validate import validate
    from desilab.io.zcatalog import write_zcatalog

    out, sample = run_serial
    qpath = out / QSO_CATALOG_NAME
    assert not [p for p in validate(qpath) if p.severity == "error"]
    cat = read_qso_catalog(qpath)
    assert cat.num_rows == N
    for name in ("BI_CIV", "AI_CIV", "VMIN_CIV_2000", "NSIIV_450", "BALMASK", "SNR_CIV"):
        assert name in cat.column_names
    zpath = write_zcatalog(tmp_path / "zpix-main-dark.fits", sample.zcatalog)
    assert not [p for p in validate(zpath) if p.severity == "error"]
    assert set(sample.zcatalog.column_names) <= {c.upper() for c in sample.zcatalog.column_names}


def test_same_seed_byte_identical_any_worker_count(run_serial, run_parallel):
    (a, sa), (b, sb) = run_serial, run_parallel
    da, db = _digests(a), _digests(b)
    assert da == db and len(da) == 2 * len(sa.pixels) + 1
    for name in sa.truth:
        assert _same(sa.truth[name], sb.truth[name]), name
    assert _same(sa.zcatalog, sb.zcatalog) and _same(sa.qso_catalog, sb.qso_catalog)


def test_no_spectra_gives_the_same_tables(run_serial, tmp_path):
    _out, sa = run_serial
    sc = generate_quasars(QuasarConfig(n_quasars=N, write_spectra=False), SEED, tmp_path)
    assert sc.files == [] and not list(tmp_path.rglob("*.fits"))
    for name in sa.truth:
        assert _same(sa.truth[name], sc.truth[name]), name
    assert _same(sa.zcatalog, sc.zcatalog) and _same(sa.qso_catalog, sc.qso_catalog)


# --- science distributions -----------------------------------------------------------------


def test_bal_fraction(run_serial):
    """Truth: BI_CIV > 0 in 12–16% of z ≥ 1.57 quasars (DESI), AI > 0 in more; the
    catalog columns (measured on the noisy spectra, baltools rules) find fewer, never
    troughs that are not there (false-positive rate ≤ 2% of non-BALs)."""
    _out, s = run_serial
    t = s.truth["qso_truth"]
    z, bi, ai = _col(t, "Z_SYS"), _col(t, "BI_CIV"), _col(t, "AI_CIV")
    hz = z >= 1.57
    assert 0.12 <= np.mean(bi[hz] > 0) <= 0.16
    assert np.mean(ai[hz] > 0) > np.mean(bi[hz] > 0) + 0.05
    cat_bi = _col(s.qso_catalog, "BI_CIV")
    assert np.mean(cat_bi[hz & (bi == 0)] > 0) <= 0.02
    assert 0 < np.mean(cat_bi[hz & (bi > 0)] > 0) <= 1
    # pixel truth (DESI grid) agrees with the 10 km/s truth within 2 pixels × depth per trough
    pix = _col(t, "BI_CIV_PIX")
    assert np.all(np.abs(pix - bi)[hz] <= 200.0)


def test_snr_distribution(run_serial):
    """Median continuum S/N per 0.8 Å pixel in r between 1.5 and 3.5 (DESI QSOs at r ≈ 21.5
    in ~1000–2000 s), a 10% tail above 6, and b noisier than r."""
    _out, s = run_serial
    t = s.truth["qso_truth"]
    snr_b, snr_r = _col(t, "SNR_B"), _col(t, "SNR_R")
    assert 1.5 <= np.median(snr_r) <= 3.5
    assert 6.0 <= np.percentile(snr_r, 90) <= 20.0
    assert np.median(snr_b) < np.median(snr_r)
    scores = _col(s.truth["qso_truth"], "MAG_R")
    assert 21.0 <= np.median(scores) <= 22.2


def test_line_width_distribution(run_serial):
    """Broad-line FWHM medians within 15% of Shen et al. (2011): C IV 4700, Mg II 3800,
    Hβ 4000 km/s (Hβ checked at 30%: few objects); [O III] core σ median 140–220 km/s."""
    _out, s = run_serial
    lines = s.truth["qso_lines"]
    name, comp, fwhm = _col(lines, "LINE"), _col(lines, "COMPONENT"), _col(lines, "FWHM")
    for line, ref, tol in (("CIV_1549", 4700, 0.15), ("MGII_2796", 3800, 0.15), ("HBETA", 4000, 0.30)):
        x = fwhm[(name == line) & (comp == "BROAD")]
        assert len(x) > 5
        assert np.median(x) == pytest.approx(ref, rel=tol), line
    sig = _col(lines, "SIGMA")[(name == "OIII_5007") & (comp == "NARROW")]
    assert 140 <= np.median(sig) <= 220


def test_truth_consistency(run_serial):
    _out, s = run_serial
    t = s.truth["qso_truth"]
    tid = _col(t, "TARGETID")
    assert len(np.unique(tid)) == N
    assert np.array_equal(tid, _col(s.zcatalog, "TARGETID"))
    assert np.array_equal(tid, _col(s.qso_catalog, "TARGETID"))
    assert np.allclose(_col(t, "Z_RR"), _col(s.zcatalog, "Z"))
    assert np.allclose(_col(t, "Z_RR"), _col(s.qso_catalog, "Z"))
    assert np.all(tid & ((1 << 22) - 1) >= (1 << 21))  # quasar OBJID range
    assert np.array_equal((tid >> 22) & ((1 << 20) - 1), _col(t, "HEALPIX"))
    anom = s.truth["qso_anomalies"]
    assert anom.num_rows == int(np.sum(_col(t, "ANOMALY")))
    assert set(_col(anom, "TARGETID")) == set(tid[_col(t, "ANOMALY").astype(bool)])
    wrong = _col(anom, "ANOMALY_CLASS") == "wrong_redshift"
    for row_tid in _col(anom, "TARGETID")[wrong]:
        i = int(np.flatnonzero(tid == row_tid)[0])
        assert round(abs(_col(t, "Z_RR")[i] - _col(t, "Z_SYS")[i]), 6) in (0.05, 0.2, 1.0)
    # line truth: [O III] 5007/4959 = 2.98 per component; [S II] ratio = the PyNeb value at n_e
    lines = s.truth["qso_lines"]
    lt, ln, lc, lf = _col(lines, "TARGETID"), _col(lines, "LINE"), _col(lines, "COMPONENT"), _col(lines, "FLUX")
    tab = bt.nebular_tables()
    log_ne = dict(zip(tid, _col(t, "LOG_NE"), strict=True))
    checked = 0
    for obj in np.unique(lt[(ln == "SII_6716")]):
        a = lf[(lt == obj) & (ln == "SII_6716") & (lc == "NARROW")]
        b = lf[(lt == obj) & (ln == "SII_6731") & (lc == "NARROW")]
        if len(a) and len(b):
            assert a[0] / b[0] == pytest.approx(float(tab.sii_ratio(log_ne[obj])), rel=1e-6)
            checked += 1
    assert checked > 0
    both = np.intersect1d(lt[ln == "OIII_5007"], lt[ln == "OIII_4959"])
    for comp in ("NARROW", "OUTFLOW"):
        five = dict(zip(lt[(ln == "OIII_5007") & (lc == comp)], lf[(ln == "OIII_5007") & (lc == comp)], strict=True))
        four = dict(zip(lt[(ln == "OIII_4959") & (lc == comp)], lf[(ln == "OIII_4959") & (lc == comp)], strict=True))
        ratios = [five[o] / four[o] for o in both if o in five and o in four]
        assert len(ratios) > 3 and np.allclose(ratios, 2.98)
    # outflows: the truth velocity is |Δv| + 2σ of the outflow component
    has = _col(t, "HAS_OIII_OUTFLOW").astype(bool)
    assert 0.3 < has.mean() < 0.6
    v_out = _col(t, "OIII_V_OUT")[has]
    assert np.allclose(v_out, np.abs(_col(t, "OIII_V_OFF")[has]) + 2 * _col(t, "OIII_SIGMA_OUT")[has])
    troughs = s.truth["qso_troughs"]
    assert set(_col(troughs, "TARGETID")) <= set(tid)
    assert s.truth["qso_truth"].schema.metadata[b"templates"] == b"builtin"


# --- interface --------------------------------------------------------------------------


def test_footprint_forms(tmp_path):
    from desilab.sky.healpix import healpix_to_radec

    cfg = QuasarConfig(n_quasars=8, per_pixel=4, write_spectra=False)
    pixels = np.array([20000, 20001, 30000])
    s = generate_quasars(cfg, 1, tmp_path, footprint=pixels)
    assert set(_col(s.truth["qso_truth"], "HEALPIX")) <= set(pixels)

    class Fp:  # like desilab.sample.footprint.Footprint: a pixels() method and observed()
        def pixels(self, ra, dec):
            raise AssertionError("must not be used as a pixel list")

        def observed(self, ra, dec):
            return (ra > 150) & (ra < 160) & (dec > 0) & (dec < 10)

    s = generate_quasars(cfg, 1, tmp_path, footprint=Fp())
    ra, dec = healpix_to_radec(_col(s.truth["qso_truth"], "HEALPIX"))
    assert np.all((ra > 149) & (ra < 161) & (dec > -1) & (dec < 11))
    with pytest.raises(InputError):
        generate_quasars(cfg, 1, tmp_path, footprint=np.array([-3]))


def test_config_validation():
    with pytest.raises(ConfigError):
        QuasarConfig(bal_bi_fraction=1.2)
    with pytest.raises(ConfigError):
        QuasarConfig(anomaly_weights={"nonsense": 1.0})
    with pytest.raises(ConfigError):
        QuasarConfig.for_scale("huge")
    with pytest.raises(ConfigError):
        generate_quasars(QuasarConfig(n_quasars=1), 1, Path("."), templates="fancy")
    assert QuasarConfig.for_scale("small").n_quasars == 5000


def test_real_templates(real, tmp_path):
    shared = real("qso_templates", "fe_uv.txt").parents[3]
    s = generate_quasars(QuasarConfig(n_quasars=6, per_pixel=6), 3, tmp_path, templates="real", shared_dir=shared)
    assert set(_col(s.truth["qso_truth"], "TEMPLATES")) == {"real"}
    import fitsio

    hdr = fitsio.read_header(str(s.files[0]))
    assert hdr["QSOTMPL"] == "real"
    with pytest.raises(InputError):
        generate_quasars(QuasarConfig(n_quasars=2), 3, tmp_path, templates="real", shared_dir=tmp_path)


def test_simulate_spectra_for_injection_tests():
    """The public injection helper: brighter → higher S/N; an outflow component put in by
    hand is in the noiseless model; instrumental anomalies can be asked for."""
    rng = np.random.default_rng(0)
    d = draw_quasar(
        rng,
        0.4,
        19.0,
        bal_bi_fraction=0,
        bal_ai_only_fraction=0,
        oiii_outflow_fraction=0.0,
        log_ne_range=(2, 3),
        te_range=(1e4, 1.2e4),
        bal_kind="",
    )
    sim = simulate_spectra([d.params, d.params], [18.5, 21.5], seed=3, instrumental=["", "spurious_8600"])
    snr = [np.median(sim.spectra.flux["r"][i] * np.sqrt(sim.spectra.ivar["r"][i])) for i in range(2)]
    assert snr[0] > 3 * snr[1]
    assert sim.info[1]["WAVE"] == pytest.approx(8600, abs=40)
    assert sim.spectra.resolution["b"].shape == (2, 11, 2751)
