"""The SQL of GetLatencyHistogram: the raw durations of one service's spans.

They come back as one ``array_send`` int8[] (``metric_reader.binary_array`` turns it into
numpy with one call), at most ``limit`` of them: the histogram and the exact percentiles
are numpy's, over every duration of the range.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from psycopg import sql

from storage.postgres.reading import Query

Statement = tuple[Query, dict[str, Any]]

_DURATIONS: Final = """
SELECT array_send(coalesce(array_agg(d), '{{}}'::bigint[]))
FROM (
    SELECT greatest(coalesce(s.duration_ns, 0), 0) AS d
    FROM spans s
    WHERE {conditions}
    LIMIT %(limit)s
) AS t
"""


def durations(
    project: str,
    *,
    start: datetime,
    end: datetime,
    service: str,
    operation: str | None,
    kind: int | None,
    limit: int,
) -> Statement:
    """``(int8[] bytes,)``: durations of the matching spans, at most ``limit``."""
    conditions = [
        sql.SQL("s.project_id = %(project)s"),
        sql.SQL("s.service_name = %(service)s"),  # spans_service_time_idx
        sql.SQL("s.time >= %(start)s"),
        sql.SQL("s.time < %(end)s"),
    ]
    params: dict[str, Any] = {
        "project": project,
        "service": service,
        "start": start,
        "end": end,
        "limit": limit,
    }
    if operation is not None:
        conditions.append(sql.SQL("s.name = %(operation)s"))
        params["operation"] = operation
    if kind is not None:
        conditions.append(sql.SQL("s.kind = %(kind)s"))
        params["kind"] = kind
    query = sql.SQL(_DURATIONS).format(conditions=sql.SQL(" AND ").join(conditions))
    return query, params
