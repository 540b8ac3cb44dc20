"""Payload keys that other Qdrant vector stores read, so their applications can use an hq collection.

hq's own payload is flat: ``lang``, ``doc_id``, ``group_id``, ``text`` (+ ``title``, ``content_hash``,
``encoder``). On request ingestion also writes, per point:

- ``langchain`` (``langchain_qdrant.QdrantVectorStore``, default keys): ``page_content`` (the text) and
  ``metadata`` (``lang``, ``doc_id``, ``group_id``, ``title``);
- ``llamaindex`` (``llama_index.vector_stores.qdrant.QdrantVectorStore``): ``_node_content`` (the JSON
  of a ``TextNode`` whose id is the point id, with the text, that metadata and the doc id as its source
  document), ``_node_type`` (``TextNode``), ``document_id`` and ``ref_doc_id`` (the doc id; hq's
  ``doc_id`` key is already the one LlamaIndex filters deletions on).

Both libraries use the collection's unnamed vector with cosine distance, as hq creates it. The keys are
derived from hq's own, so a collection's layout is a property of the collection: ingestion keeps the
one a collection was built with (see ``formats_of``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.store.base import DOC_ID_KEY, GROUP_KEY, LANG_KEY, TEXT_KEY, point_id

FORMATS = ("langchain", "llamaindex")
LANGCHAIN_CONTENT_KEY = "page_content"
LANGCHAIN_METADATA_KEY = "metadata"
LLAMAINDEX_NODE_KEY = "_node_content"
LLAMAINDEX_TYPE_KEY = "_node_type"
LLAMAINDEX_NODE_TYPE = "TextNode"
#: hq payload keys copied into the other libraries' metadata.
METADATA_KEYS = (LANG_KEY, DOC_ID_KEY, GROUP_KEY, "title")
#: LlamaIndex's "parent document" relationship (``NodeRelationship.SOURCE``).
_SOURCE_RELATIONSHIP = "1"


def check_formats(formats: Iterable[str] | None) -> tuple[str, ...]:
    """The requested formats, sorted and unique; ConfigError naming an unknown one."""
    out = sorted(set(formats or ()))
    unknown = [f for f in out if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown payload format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(out)


def formats_of(payload: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The formats a stored payload was written with."""
    if not payload:
        return ()
    found = []
    if LANGCHAIN_CONTENT_KEY in payload and isinstance(payload.get(LANGCHAIN_METADATA_KEY), dict):
        found.append("langchain")
    if LLAMAINDEX_NODE_KEY in payload:
        found.append("llamaindex")
    return tuple(found)


def compat_payload(payload: Mapping[str, Any], formats: Iterable[str]) -> dict[str, Any]:
    """The extra keys of ``formats`` for an hq payload (which must hold the text)."""
    formats = tuple(formats)
    if not formats:
        return {}
    if TEXT_KEY not in payload:
        raise ConfigError("payloads for other libraries need the passage text in the payload")
    metadata = {k: payload[k] for k in METADATA_KEYS if payload.get(k) is not None}
    out: dict[str, Any] = {}
    if "langchain" in formats:
        out[LANGCHAIN_CONTENT_KEY] = payload[TEXT_KEY]
        out[LANGCHAIN_METADATA_KEY] = metadata
    if "llamaindex" in formats:
        doc_id = payload[DOC_ID_KEY]
        node = {
            "id_": point_id(doc_id),
            "embedding": None,
            "metadata": metadata,
            "excluded_embed_metadata_keys": sorted(metadata),  # the vector is of the text alone
            "excluded_llm_metadata_keys": sorted(k for k in metadata if k in (DOC_ID_KEY, GROUP_KEY)),
            "relationships": {
                _SOURCE_RELATIONSHIP: {"node_id": doc_id, "metadata": {}, "class_name": "RelatedNodeInfo"}
            },
            "text": payload[TEXT_KEY],
            "class_name": LLAMAINDEX_NODE_TYPE,
        }
        out[LLAMAINDEX_NODE_KEY] = json.dumps(node, ensure_ascii=False)
        out[LLAMAINDEX_TYPE_KEY] = LLAMAINDEX_NODE_TYPE
        out["document_id"] = doc_id
        out["ref_doc_id"] = doc_id
    return out
