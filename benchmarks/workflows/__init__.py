"""Workflows: commands that drive the engine and then read the results store (compare-mine, calibrate, tune).

The layer above both ``benchmarks.engine`` and ``benchmarks.analysis``; nothing below imports it.
"""
