"""The sample sky: a realistic mock DR1 universe with known truth, written in the real formats.

``build_sample_sky(config_for_scale("tiny"), out_dir, seed=1)`` writes galaxies (zcatalog,
FastSpecFit), DESIVAST void catalogues, quasar spectra and catalogues, and ``truth/``, in a
folder laid out like the public DR1 tree. See ``docs/sample-sky.md``.

Modules: :mod:`~desilab.sample.config` (scales and tunables with their sources),
:mod:`~desilab.sample.footprint` (tiles, passes, masks), :mod:`~desilab.sample.lss`
(the Voronoi cosmic web), :mod:`~desilab.sample.galaxies` (properties and observation),
:mod:`~desilab.sample.voids` (VoidFinder and V² catalogues consistent with the galaxies),
:mod:`~desilab.sample.truth`, :mod:`~desilab.sample.build` (orchestration),
:mod:`~desilab.sample.quasars` (quasar spectra and catalogues).
"""

from desilab.sample.build import SampleSky, build_sample_sky, sample_paths
from desilab.sample.config import SCALES, SampleConfig, config_for_scale

__all__ = ["SCALES", "SampleConfig", "SampleSky", "build_sample_sky", "config_for_scale", "sample_paths"]
