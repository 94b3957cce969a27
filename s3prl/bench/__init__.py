"""`make bench`: performance benchmarks measured side by side in one run (see bench/README.md).

Each module measures one thing and returns a plain dict (JSON-ready): ratios of two
implementations timed in the same process and moment, because absolute seconds on shared machines
are noise. Nothing here is imported by the toolkit's own code paths.
"""
