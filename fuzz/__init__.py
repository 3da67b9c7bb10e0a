"""Fuzzing lfws: atheris targets (:mod:`fuzz.targets`), their seed corpora and runners.

``python fuzz/run.py --target NAME --runs N`` fuzzes one target with atheris;
``python fuzz/simulate.py`` runs the deterministic simulation over many seeds;
``python fuzz/chaos.py`` runs clients and a real ``lfws serve`` through a
fault-injecting proxy, killing the server now and then (long chaos runs).
"""
