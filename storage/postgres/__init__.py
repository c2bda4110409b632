"""The PostgreSQL hot tier: recent spans, logs and metric points, queryable at once.

``migrate`` brings the schema up to date, ``PartitionManager`` keeps the hourly (by
default) time partitions ahead of the data, ``PostgresWriter`` stores row batches by
binary COPY in one transaction each, and ``PostgresSessionDirectory`` answers which
project and user a session belongs to. Older partitions move to the archive tier.
"""
