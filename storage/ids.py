"""The persisted id contract: how a metric series and a resource get their 63-bit ids.

Records refer to their series (``metric_points.series_id``) and their resource
(``spans.resource_id``, ``logs.resource_id``) by a hash that every process computes alike,
so that no replica needs a round trip to learn an id. The ids are stored: changing any
rule below orphans every series and resource already stored. The decoder builds the
canonical texts; this module owns how they are hashed, so storage code (tiering,
readers) can recompute or check an id without importing the receiver.

Both are the first 8 bytes of BLAKE2b over NUL-separated parts, big-endian, masked to 63
bits so that they fit a non-negative ``bigint``. NUL cannot occur in any part (JSON text
escapes it, and project ids, schema URLs and decimal counts hold none), so the encoding
is unambiguous.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

ID_MASK: Final = (1 << 63) - 1


def _hash(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big") & ID_MASK


def series_id(project_id: str, attributes: str, identity: str) -> int:
    """``BLAKE2b("<project>\\0<attributes>\\0<identity>")``, 63 bits.

    ``attributes`` is the data point attributes' JSON object with its keys in canonical
    (sorted) order. ``identity`` is the JSON array ``[metric name, MetricType, unit,
    temporality, monotonic, resource JSON (sorted), scope name, scope version]``, followed
    by ``scope attributes JSON (sorted), scope schema_url, resource schema_url`` only when
    any of those three is present, so that series without them kept their ids when those
    fields became part of the identity.
    """
    return _hash(f"{project_id}\x00{attributes}\x00{identity}")


def resource_id(attributes: str, schema_url: str, dropped_attributes_count: int) -> int:
    """``BLAKE2b("<attributes>\\0<schema_url>\\0<dropped>")``, 63 bits.

    ``attributes`` is the resource attributes' JSON object in canonical (sorted) order,
    ``schema_url`` is "" when absent and ``dropped_attributes_count`` is in decimal as
    stored (saturated to ``integer``). No project: the records of one resource may belong
    to several projects, each of which gets a ``resources`` row with this id.
    """
    return _hash(f"{attributes}\x00{schema_url}\x00{dropped_attributes_count}")
