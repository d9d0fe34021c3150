"""Cosmic-void galaxy pipeline: environment classification, quenching statistics, VAC, figures.

See ``docs/voids.md``. Pure numerical modules: :mod:`~desilab.voids.sample`,
:mod:`~desilab.voids.coords`, :mod:`~desilab.voids.membership`, :mod:`~desilab.voids.stats`;
drivers: :mod:`~desilab.voids.catalogs`, :mod:`~desilab.voids.classify`,
:mod:`~desilab.voids.analysis`, :mod:`~desilab.voids.pipeline`, :mod:`~desilab.voids.stage`.
"""
