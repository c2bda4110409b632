"""``make bench``: otlpd's ingest benchmark against the rotel-agent reference.

``python -m bench --help`` lists the options; ``docs/benchmarks.md`` has the results.
"""
