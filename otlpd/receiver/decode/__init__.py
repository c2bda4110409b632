"""OTLP Export requests (serialized protobuf) to storage rows, with the correlation envelope.

One ``Decoder`` per process, shared by every receiver; each call decodes one request into
a ``RowBatch`` (``storage.model`` documents the row contract) and says which records it
refused and why, for the OTLP partial-success answer. A record that breaks a rule is
refused alone; the rest of its request is kept.

This is the hot path of ingestion, so the record loops read each protobuf field once, keep
what they reuse in locals, build a row as one tuple and leave attribute lists to
``anyvalue.AttributeEncoder`` (see ``messages`` for why attributes arrive as raw bytes).
Decoding is deterministic for a given ``SessionCache`` state: a request is decoded again
once the session directory has answered for the sessions it left unresolved.

``decoder`` walks requests, resources and scopes; ``spans``, ``logs`` and ``metrics``
decode one signal's records each; ``checks`` and ``limits`` hold the rules they share.
"""

from otlpd.receiver.decode.decoder import Decoded, Decoder
from otlpd.receiver.decode.limits import DecodeLimits
from otlpd.receiver.decode.policy import DecodePolicy

__all__ = ["DecodeLimits", "DecodePolicy", "Decoded", "Decoder"]
