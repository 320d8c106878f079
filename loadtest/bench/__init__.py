"""One-command benchmark of the order execution engine: starts the engine itself, measures, cleans up.

``python -m loadtest.bench [--quick] [--tiny]`` starts an engine per group of measurements (intake, capacity,
default venue timings), measures, prints the goal table and writes it as JSON and CSV under ``--out``. What
each figure means and how it is measured: ``loadtest/bench/README.md``.
"""
