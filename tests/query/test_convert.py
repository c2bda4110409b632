"""Stored values to API messages; a resource is parsed once per id, and copies stay apart."""

from __future__ import annotations

from google.protobuf import struct_pb2

from query import convert


def test_a_resource_is_built_once_per_id_and_every_target_gets_its_own_copy() -> None:
    cache = convert._Resources(2)
    first = cache.get(1, '{"service.name": "a", "n": 1}')
    assert first is not None and first["service.name"] == "a"
    assert cache.get(1, None) is first  # known: no text needed, nothing parsed again
    target = struct_pb2.Struct()
    convert.set_resource(target, 424242, '{"host": "h"}')
    target["host"] = "changed"
    again = struct_pb2.Struct()
    convert.set_resource(again, 424242, None)
    assert again["host"] == "h"  # a copy, not the cached Struct itself


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = convert._Resources(2)
    cache.get(1, '{"a": 1}')
    cache.get(2, '{"b": 2}')
    cache.get(1, None)
    cache.get(3, '{"c": 3}')  # evicts 2, the least recently used
    assert cache.get(2, None) is None
    assert cache.get(1, None) is not None and cache.get(3, None) is not None


def test_a_record_without_resource_attributes_has_an_empty_resource() -> None:
    target = struct_pb2.Struct()
    convert.set_resource(target, 7, "{}")
    assert not target.fields
    convert.set_resource(target, 8, None)
    assert not target.fields
