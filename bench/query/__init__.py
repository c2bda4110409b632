"""``make bench-query``: loads a day of spans, logs and metrics, then times the query API.

``python -m bench.query --help`` lists the options; ``docs/benchmarks.md`` ("Query") has
the targets and the results.
"""
