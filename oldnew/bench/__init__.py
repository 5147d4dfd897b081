"""Benchmarks: the graph under injected faults, and the quality gates' timings.

``oldnew bench faults`` runs :mod:`.faults`; ``python -m oldnew.bench.gates`` runs :mod:`.gates`.
"""
