"""Cloudy photoionisation grids: input decks, parallel runs, output parsing, interpolation.

Cloudy is not installable in the lab's environment, so this module is the interface a lab
*with* Cloudy needs; U and n_H are **not** measured on real Cloudy output here (the
tests use an analytic grid written in Cloudy's ``save line list`` format).

Grid (the seed's): log U −4…−1 in 0.1 dex, log n_H 1…6 in 0.25 dex, Z = 0.1, 0.3, 1, 3
solar, Cloudy's built-in ``AGN`` SED (T = 1.5e5 K, α_ox = −1.4, α_uv = −0.5, α_x = −1),
stopping at a column of 10²² cm⁻² (a named parameter).

Each grid point gets one deck (:func:`make_deck`) that ends with
``save line list "<stem>.lin" "lines.dat" last no hash absolute``; Cloudy writes a
tab-separated file whose first line is a header (``#`` + the line labels) and whose
following rows are one per iteration (first field the iteration label, then the line
intensities, linear, erg s⁻¹ cm⁻²). :func:`parse_line_list` reads the last row.
:func:`run_grid` runs the decks through :mod:`desilab.compute` (``cloudy -r <stem>`` in the
deck folder) when an executable is configured, and :func:`collect_grid` gathers the
outputs into one :class:`CloudyGrid`, saved as one Parquet file (:func:`write_grid`).

:func:`infer` turns observed line ratios into (log U, log n_H) by χ² over a cubic
interpolation of the grid (at fixed Z), with 1σ ranges (Δχ² = 2.30) and a quoted
interpolation error: the change in the solution between cubic and linear interpolation
(:attr:`Inference.interp_err_dex`). :func:`interpolation_error` measures the grid's own
interpolation error by predicting every other node from the decimated grid.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.interpolate import RegularGridInterpolator

from desilab.compute import Executor
from desilab.errors import ComputeError, ConfigError, FormatError, InputError
from desilab.io.fits import atomic_output

__all__ = [
    "DEFAULT_LINES",
    "CloudyGrid",
    "GridSpec",
    "Inference",
    "collect_grid",
    "infer",
    "interpolation_error",
    "make_deck",
    "parse_line_list",
    "read_grid",
    "run_grid",
    "write_decks",
    "write_grid",
]

#: Cloudy line labels (air wavelengths, Cloudy ≥ C17 label style) → pipeline names.
DEFAULT_LINES: dict[str, str] = {
    "H  1  4861.32A": "HB",
    "H  1  6562.80A": "HA",
    "O  3  5006.84A": "OIII_5007",
    "O  3  4363.21A": "OIII_4363",
    "N  2  6583.45A": "NII_6583",
    "S  2  6716.44A": "SII_6716",
    "S  2  6730.82A": "SII_6731",
    "O  2  3726.03A": "OII_3726",
    "O  2  3728.81A": "OII_3729",
}


@dataclass(frozen=True)
class GridSpec:
    """The grid axes and fixed physics of a Cloudy run."""

    log_u: tuple[float, ...] = tuple(np.round(np.arange(-4.0, -1.0 + 1e-9, 0.1), 2))
    log_nh: tuple[float, ...] = tuple(np.round(np.arange(1.0, 6.0 + 1e-9, 0.25), 2))
    metallicity: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    sed: str = "AGN T=1.5e5 k, a(ox)=-1.4, a(uv)=-0.5, a(x)=-1"
    stop_column: float = 22.0
    lines: tuple[str, ...] = tuple(DEFAULT_LINES)

    def points(self) -> list[tuple[float, float, float]]:
        """All (log U, log n_H, Z) combinations, Z slowest."""
        return [(u, n, z) for z, u, n in itertools.product(self.metallicity, self.log_u, self.log_nh)]


def stem(log_u: float, log_nh: float, z: float) -> str:
    """File stem of one grid point (no dots, sortable)."""
    return f"U{log_u:+.2f}_n{log_nh:.2f}_Z{z:.2f}".replace(".", "p").replace("+", "p").replace("-", "m")


def make_deck(log_u: float, log_nh: float, z: float, spec: GridSpec = GridSpec()) -> str:
    """Cloudy input deck for one grid point."""
    return "\n".join(
        [
            f"title desilab grid log U={log_u:.2f} log nH={log_nh:.2f} Z={z:.2f}",
            spec.sed,
            f"ionization parameter {log_u:.3f}",
            f"hden {log_nh:.3f}",
            "abundances GASS no grains",
            "grains ism",
            f"metals and grains {z:.4f} linear",
            f"stop column density {spec.stop_column:.2f}",
            "iterate to convergence",
            "print last iteration",
            f'save line list "{stem(log_u, log_nh, z)}.lin" "lines.dat" last no hash absolute',
            "",
        ]
    )


def write_decks(out_dir: str | Path, spec: GridSpec = GridSpec()) -> list[str]:
    """Write one ``<stem>.in`` per grid point and the ``lines.dat`` line list; return the stems."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lines.dat").write_text("\n".join(spec.lines) + "\n")
    stems = []
    for u, n, z in spec.points():
        s = stem(u, n, z)
        (out / f"{s}.in").write_text(make_deck(u, n, z, spec))
        stems.append(s)
    return stems


def _run_one(shard: tuple[str, str, str, float]) -> tuple[str, int]:
    executable, folder, name, timeout = shard
    done = subprocess.run([executable, "-r", name], cwd=folder, capture_output=True, text=True, timeout=timeout)
    return name, done.returncode


def run_grid(
    deck_dir: str | Path,
    stems: Sequence[str],
    executable: str | None,
    executor: Executor,
    timeout_s: float = 3600.0,
) -> dict[str, int]:
    """Run Cloudy on every deck through *executor*; return stem → exit code.

    Raises
    ------
    ConfigError
        When no Cloudy executable is configured (``executable`` None or missing).
    """
    if not executable or not Path(executable).exists():
        raise ConfigError(
            "no Cloudy executable configured; install Cloudy (www.nublado.org) and pass its path",
            parameter="cloudy",
        )
    shards = [(str(executable), str(deck_dir), s, timeout_s) for s in stems]
    results = executor.map(_run_one, shards, ids=list(stems), desc="cloudy")
    return dict(results)


def parse_line_list(path: str | Path) -> dict[str, float]:
    """Read a Cloudy ``save line list`` file: label → intensity of the last iteration.

    Raises
    ------
    FormatError
        Missing header or data row, or a row whose length does not match the header.
    """
    path = Path(path)
    rows = [r.rstrip("\n") for r in path.read_text().splitlines() if r.strip()]
    if not rows or not rows[0].startswith("#"):
        raise FormatError("no '#' header line with the line labels", file=path)
    labels = [c.strip() for c in rows[0].lstrip("#").split("\t")][1:]
    data = [r.split("\t") for r in rows[1:] if not r.startswith("#")]
    if not data:
        raise FormatError("no data row", file=path)
    last = data[-1]
    if len(last) - 1 != len(labels):
        raise FormatError(f"row has {len(last) - 1} values for {len(labels)} labels", file=path)
    return {lab: float(v) for lab, v in zip(labels, last[1:], strict=True)}


@dataclass
class CloudyGrid:
    """Line intensities on the (Z, log U, log n_H) grid: ``lines[name]`` (nZ, nU, nN)."""

    log_u: np.ndarray
    log_nh: np.ndarray
    metallicity: np.ndarray
    lines: dict[str, np.ndarray]

    def log_ratio(self, num: str, den: str) -> np.ndarray:
        """log10 of a line ratio on the grid (nZ, nU, nN)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(self.lines[num] / self.lines[den])


def collect_grid(out_dir: str | Path, spec: GridSpec = GridSpec(), names: dict[str, str] | None = None) -> CloudyGrid:
    """Parse every ``<stem>.lin`` of a run into one :class:`CloudyGrid` (NaN where missing)."""
    names = names or DEFAULT_LINES
    out = Path(out_dir)
    shape = (len(spec.metallicity), len(spec.log_u), len(spec.log_nh))
    lines = {names[lab]: np.full(shape, np.nan) for lab in spec.lines}
    for iz, z in enumerate(spec.metallicity):
        for iu, u in enumerate(spec.log_u):
            for i_n, n in enumerate(spec.log_nh):
                f = out / f"{stem(u, n, z)}.lin"
                if not f.exists():
                    continue
                vals = parse_line_list(f)
                for lab, v in vals.items():
                    if lab in names:
                        lines[names[lab]][iz, iu, i_n] = v
    return CloudyGrid(np.array(spec.log_u), np.array(spec.log_nh), np.array(spec.metallicity), lines)


def write_grid(grid: CloudyGrid, path: str | Path) -> Path:
    """One Parquet file, one row per grid point (LOG_U, LOG_NH, Z, then the lines)."""
    zz, uu, nn = np.meshgrid(grid.metallicity, grid.log_u, grid.log_nh, indexing="ij")
    cols = {"Z": zz.ravel(), "LOG_U": uu.ravel(), "LOG_NH": nn.ravel()}
    cols.update({k: v.ravel() for k, v in grid.lines.items()})
    with atomic_output(path) as tmp:
        pq.write_table(pa.table(cols), tmp)
    return Path(path)


def read_grid(path: str | Path) -> CloudyGrid:
    """Inverse of :func:`write_grid`."""
    t = pq.read_table(path).to_pydict()
    z = np.unique(t.pop("Z"))
    u = np.unique(t.pop("LOG_U"))
    n = np.unique(t.pop("LOG_NH"))
    shape = (z.size, u.size, n.size)
    return CloudyGrid(u, n, z, {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in t.items()})


@dataclass
class Inference:
    """(log U, log n_H) from observed ratios, with 1σ ranges and interpolation error [dex]."""

    log_u: float
    log_nh: float
    log_u_range: tuple[float, float]
    log_nh_range: tuple[float, float]
    chi2: float
    interp_err_dex: float


def _ratio_cube(grid: CloudyGrid, ratios: Sequence[tuple[str, str]], iz: int) -> np.ndarray:
    return np.stack([grid.log_ratio(a, b)[iz] for a, b in ratios], axis=-1)


def infer(
    grid: CloudyGrid,
    observed: dict[tuple[str, str], tuple[float, float]],
    metallicity: float = 1.0,
    oversample: int = 10,
) -> Inference:
    """Observed line ratios → (log U, log n_H) at fixed Z.

    Parameters
    ----------
    grid
        The Cloudy grid.
    observed
        ``(numerator, denominator)`` → (ratio, 1σ error), linear.
    metallicity
        Z [solar]; must be one of the grid's values.
    oversample
        Fine-grid factor for the χ² surface.
    """
    iz = int(np.argmin(np.abs(grid.metallicity - metallicity)))
    if not np.isclose(grid.metallicity[iz], metallicity):
        raise InputError(f"Z={metallicity} is not on the grid {grid.metallicity.tolist()}", parameter="metallicity")
    keys = list(observed)
    if len(keys) < 2:
        raise InputError("need at least two ratios to constrain U and n_H", parameter="observed")
    cube = _ratio_cube(grid, keys, iz)
    obs = np.array([np.log10(observed[k][0]) for k in keys])
    err = np.array([observed[k][1] / (observed[k][0] * np.log(10)) for k in keys])
    fu = np.linspace(grid.log_u[0], grid.log_u[-1], (grid.log_u.size - 1) * oversample + 1)
    fn = np.linspace(grid.log_nh[0], grid.log_nh[-1], (grid.log_nh.size - 1) * oversample + 1)
    pts = np.stack(np.meshgrid(fu, fn, indexing="ij"), axis=-1).reshape(-1, 2)

    def solve(method: str) -> tuple[float, float, np.ndarray]:
        model = np.stack(
            [
                RegularGridInterpolator((grid.log_u, grid.log_nh), cube[..., j], method=method)(pts)
                for j in range(len(keys))
            ],
            axis=-1,
        )
        chi2 = np.sum(((model - obs) / err) ** 2, axis=1).reshape(fu.size, fn.size)
        i, j = np.unravel_index(np.nanargmin(chi2), chi2.shape)
        return float(fu[i]), float(fn[j]), chi2

    u_c, n_c, chi2 = solve("cubic")
    u_l, n_l, _ = solve("linear")
    ok = chi2 <= np.nanmin(chi2) + 2.30
    iu, i_n = np.nonzero(ok)
    return Inference(
        log_u=u_c,
        log_nh=n_c,
        log_u_range=(float(fu[iu.min()]), float(fu[iu.max()])),
        log_nh_range=(float(fn[i_n.min()]), float(fn[i_n.max()])),
        chi2=float(np.nanmin(chi2)),
        interp_err_dex=float(max(abs(u_c - u_l), abs(n_c - n_l))),
    )


def interpolation_error(grid: CloudyGrid, ratio: tuple[str, str], metallicity: float = 1.0) -> float:
    """Median relative error of a ratio predicted at the odd nodes from the even-node grid.

    A conservative estimate (the decimated grid has twice the spacing) of the cubic
    interpolation error on the full grid; the seed's goal is < 1 %.
    """
    iz = int(np.argmin(np.abs(grid.metallicity - metallicity)))
    lr = grid.log_ratio(*ratio)[iz]
    u, n = grid.log_u, grid.log_nh
    sub = RegularGridInterpolator((u[::2], n[::2]), lr[::2, ::2], method="cubic")
    uu, nn = np.meshgrid(u[1:-1:2], n[1:-1:2], indexing="ij")
    pred = sub(np.stack([uu.ravel(), nn.ravel()], axis=-1))
    true = lr[1:-1:2, 1:-1:2].ravel()
    good = np.isfinite(pred) & np.isfinite(true)
    if not good.any():
        raise ComputeError("no finite ratios on the grid to test interpolation")
    return float(np.median(np.abs(10 ** (pred[good] - true[good]) - 1.0)))
