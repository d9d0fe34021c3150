"""Quasar outflow pipeline (issue #6): preparation, continuum, systemic redshifts, batched
line fits, BAL metrics, physical conditions, Cloudy interface, energetics and products.

Science modules (``prepare``, ``continuum``, ``systemic``, ``lines``, ``bal``,
``physical``, ``cloudy``, ``energetics``) are pure: arrays in, arrays/dataclasses out.
``catalog``, ``stage`` and ``figures`` are the thin drivers. See docs/outflows.md.
"""
