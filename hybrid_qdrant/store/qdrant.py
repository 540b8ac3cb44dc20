"""What the two Qdrant adapters share: the data plane and the alias rules over a few engine primitives.

``EdgeStore`` (qdrant-edge, embedded) and ``ServerStore`` (qdrant-client: a server or its local mode)
differ in how they reach Qdrant, not in what they do with it. This base class holds the common part;
each engine supplies:

- ``_scroll(langs, with_vectors, with_payload, batch)``: every point (of some languages), in pages;
- ``_retrieve(point_ids, payload_keys)``: points by id, with those payload keys and no vectors;
- ``_record_vector(record)``: a returned point's vector as (dim,) float32 (empty when none);
- ``_spec_now()``: the collection's spec (attaching to it);
- ``collections()``, ``aliases()``, ``_drop(name)``, ``_switch_alias(alias, collection, old)``,
  ``_remove_alias(alias)``, ``_alias_changed(alias)`` (forget what was attached through the alias) and
  ``_location()`` (the directory or server, for messages);
- ``_index_details(name)`` (how the collection is indexed and stored, for ``details``) and
  ``_facet_counts(key)`` (points per payload value; None where the engine cannot count them so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import (
    CONTENT_KEY,
    DOC_ID_KEY,
    LANG_KEY,
    CollectionDetails,
    CollectionSpec,
    Langs,
    StoreRecord,
    point_id,
)
from hybrid_qdrant.store.naming import check_deletable, next_version, validate_name
from hybrid_qdrant.store.points import record_doc_id

logger = logging.getLogger(__name__)

#: Points per ``_retrieve`` request.
RETRIEVE_BATCH = 1000

#: The least HNSW beam width of an approximate search when none is set (see ``search_ef``).
DEFAULT_HNSW_EF = 128


def search_ef(hnsw_ef: int | None, limit: int) -> int:
    """The HNSW beam width of an approximate search for ``limit`` hits: ``hnsw_ef`` when set, otherwise
    ``max(128, 2 * limit)``. Qdrant's own default searched XQuAD-R (me5-small, 13,014 points, with and
    without a language filter) at top-100 recall 0.9858 against exact search; 128 gave 0.9913 and 256
    gave 0.9981 (eval/results/BENCHMARKS.md), so twice the limit keeps recall@limit above 0.99."""
    return hnsw_ef if hnsw_ef is not None else max(DEFAULT_HNSW_EF, 2 * limit)


def check_search_tuning(hnsw_ef: int | None, rescore: bool | None, oversampling: float | None) -> None:
    """ValueError for approximate-search settings no engine accepts (None: the engine's default)."""
    if hnsw_ef is not None and (isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef < 1):
        raise ValueError(f"hnsw_ef must be a positive integer, got {hnsw_ef!r}")
    if rescore is not None and not isinstance(rescore, bool):
        raise ValueError(f"rescore must be true or false, got {rescore!r}")
    if oversampling is not None and (
        isinstance(oversampling, bool)
        or not isinstance(oversampling, (int, float))
        or not 1 <= oversampling < float("inf")
    ):
        raise ValueError(f"oversampling must be a number >= 1, got {oversampling!r}")


class QdrantStore:
    """The data plane and alias rules of a Qdrant collection store (see the module docstring)."""

    collection: str

    # ----------------------------------------------------------------- engine primitives

    def _scroll(self, lang: Langs, with_vectors: bool, with_payload: Any, batch: int) -> Iterator[Any]:
        raise NotImplementedError

    def _retrieve(self, point_ids: Sequence[str], payload_keys: list[str]) -> list[Any]:
        raise NotImplementedError

    def _record_vector(self, record: Any) -> np.ndarray:
        raise NotImplementedError

    def _spec_now(self) -> CollectionSpec:
        raise NotImplementedError

    def collections(self) -> list[str]:
        raise NotImplementedError

    def aliases(self) -> dict[str, str]:
        raise NotImplementedError

    def _drop(self, name: str) -> bool:
        raise NotImplementedError

    def _switch_alias(self, alias: str, collection: str, old: str | None) -> None:
        raise NotImplementedError

    def _remove_alias(self, alias: str) -> None:
        raise NotImplementedError

    def _location(self) -> str:
        """Where the collections are, for messages (a directory or a server)."""
        raise NotImplementedError

    def labels(self, name: str) -> dict[str, str]:
        """Small string labels recorded on a collection (e.g. the state of a re-index); ``{}`` if none."""
        raise NotImplementedError

    def set_labels(self, name: str, changes: dict[str, str | None]) -> None:
        """Record labels on a collection (None removes one)."""
        raise NotImplementedError

    def _alias_changed(self, alias: str) -> None:
        """Called after ``alias`` moved or went away (a store attached through it re-resolves)."""

    def _index_details(self, name: str) -> dict[str, Any]:
        """How collection ``name`` is indexed and stored, as plain values (engine, HNSW, quantization,
        segments, payload indexes, ...)."""
        raise NotImplementedError

    def _facet_counts(self, key: str) -> dict[str, int] | None:
        """Points per value of payload ``key`` (exact); None when the engine cannot count them so."""
        raise NotImplementedError

    # ----------------------------------------------------------------- reading points back

    def existing(self, doc_ids: Iterable[str]) -> dict[str, str | None]:
        """Which of these doc ids are already stored, with their content hashes (None: none stored)."""
        by_point = {point_id(d): d for d in doc_ids}
        pids = list(by_point)
        found: dict[str, str | None] = {}
        for start in range(0, len(pids), RETRIEVE_BATCH):
            for record in self._retrieve(pids[start : start + RETRIEVE_BATCH], [CONTENT_KEY]):
                found[by_point[str(record.id)]] = (record.payload or {}).get(CONTENT_KEY)
        return found

    def iter_records(
        self, lang: Langs = None, with_vectors: bool = True, batch: int = 1000
    ) -> Iterator[StoreRecord]:
        """Scroll every point (optionally of some languages) with its full payload."""
        for record in self._scroll(lang, with_vectors, True, batch):
            vector = self._record_vector(record) if with_vectors else np.empty(0, np.float32)
            yield StoreRecord(record_doc_id(record), vector, dict(record.payload or {}))

    def vectors(self, lang: Langs = None) -> tuple[list[str], np.ndarray]:
        """Doc ids and stored vectors ((n, dim) float32) for exact reference scoring."""
        dim = self._spec_now().dim
        doc_ids: list[str] = []
        rows: list[np.ndarray] = []
        for record in self._scroll(lang, True, [DOC_ID_KEY], 2000):
            doc_ids.append(record_doc_id(record))
            rows.append(self._record_vector(record))
        return doc_ids, np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)  # (n, dim)

    def doc_ids(self, lang: Langs = None) -> set[str]:
        """All stored doc ids, optionally of some languages."""
        return {record_doc_id(r) for r in self._scroll(lang, False, [DOC_ID_KEY], 2000)}

    # ----------------------------------------------------------------- collections and aliases

    def details(self) -> CollectionDetails:
        """The collection in detail: points per language (a facet, or counted by scrolling where the
        engine has none), index and storage settings, aliases, one point's payload."""
        name = self.resolve(self.collection)
        if name not in self.collections():
            raise StoreError(f"collection '{self.collection}' does not exist at {self._location()}")
        spec = self.spec()
        index = self._index_details(name)
        counts = self._facet_counts(LANG_KEY)
        if counts is None:
            counts = {}
            for record in self._scroll(None, False, [LANG_KEY], 2000):
                lang = str((record.payload or {}).get(LANG_KEY))
                counts[lang] = counts.get(lang, 0) + 1
        sample = next(iter(self.iter_records(with_vectors=False, batch=1)), None)
        return CollectionDetails(
            name,
            spec,
            self.count(),
            dict(sorted(counts.items())),
            index,
            self._aliases_of(name),
            sample.payload if sample else None,
        )

    def _aliases_of(self, name: str) -> tuple[str, ...]:
        """The aliases pointing to collection ``name``, sorted."""
        return tuple(sorted(a for a, target in self.aliases().items() if target == name))

    def delete_collection(self, name: str) -> bool:
        """Drop a collection (explicitly, by name); refuses aliases and alias targets."""
        check_deletable(name, self.aliases())
        return self._drop(name)

    def next_version(self, base: str) -> str:
        """The next free ``{base}_v{n}``."""
        return next_version(base, self.collections())

    def resolve(self, name: str) -> str:
        """The collection an alias points to, or ``name``."""
        return self.aliases().get(name, name)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically; the previous target is kept."""
        validate_name(alias, "alias")
        validate_name(collection)
        names = set(self.collections())
        if alias in names:
            raise StoreError(f"cannot create alias '{alias}': a collection has that name")
        if collection not in names:
            raise StoreError(
                f"cannot point alias '{alias}' at '{collection}': no such collection at {self._location()}"
            )
        old = self.aliases().get(alias)
        self._switch_alias(alias, collection, old)
        logger.info("alias %s -> %s (was %s)", alias, collection, old)
        self._alias_changed(alias)

    def delete_alias(self, alias: str) -> bool:
        """Remove an alias (its collection stays); False when there was none."""
        if alias not in self.aliases():
            return False
        self._remove_alias(alias)
        self._alias_changed(alias)
        return True
