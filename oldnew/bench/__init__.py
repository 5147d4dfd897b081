"""Benchmarks: the graph under injected faults (``oldnew bench faults``)."""
