"""Fuzzing lfws: atheris targets (:mod:`fuzz.targets`), their seed corpora and runners.

``python fuzz/run.py --target NAME --runs N`` fuzzes one target with atheris;
``python fuzz/simulate.py`` runs the deterministic simulation over many seeds.
"""
