"""An in-memory numpy store: exact brute-force search, the reference the Qdrant engines are held to.

It keeps the ``DataStore`` contract (lang filter, score-descending hits with doc-id tie-break) with
plain matrix products, so it measures the floor of any evaluation: what the same work costs with no
vector database in the way. Not persistent; for tests, benchmarks and small experiments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from hybrid_qdrant import ranking as R
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import CONTENT_KEY, LANG_KEY, CollectionSpec, Hit, Langs, lang_set


class ArrayStore:
    """Exact cosine search over vectors held in numpy arrays, ``lang`` taken from each payload."""

    def __init__(self, collection: str = "array") -> None:
        self.collection = collection
        self._spec: CollectionSpec | None = None
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._langs: list[str | None] = []
        self._content: dict[str, str | None] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._cache: dict[frozenset[str] | None, tuple[list[str], np.ndarray]] = {}

    def ensure_collection(self, spec: CollectionSpec, recreate: bool = False) -> bool:
        if self._spec is not None and not recreate:
            if (self._spec.dim, self._spec.encoder) != (spec.dim, spec.encoder):
                raise StoreError(
                    f"collection '{self.collection}' has dim {self._spec.dim}, model gives {spec.dim}"
                )
            return False
        self.__init__(self.collection)
        self._spec = spec
        self._vectors = np.zeros((0, spec.dim), dtype=np.float32)
        return True

    def exists(self) -> bool:
        return self._spec is not None

    def upsert(self, doc_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        if self._spec is None:
            raise StoreError(f"collection '{self.collection}' does not exist")
        rows = np.asarray(vectors, dtype=np.float32)
        rows = rows / np.maximum(
            np.linalg.norm(rows, axis=1, keepdims=True), 1e-12
        )  # cosine, as Qdrant stores
        new = []
        for doc_id, row, payload in zip(doc_ids, rows, payloads, strict=True):
            self._content[doc_id] = payload.get(CONTENT_KEY)
            if doc_id in self._rows:
                self._vectors[self._rows[doc_id]] = row
                self._langs[self._rows[doc_id]] = payload.get(LANG_KEY)
            else:
                self._rows[doc_id] = len(self._ids) + len(new)
                new.append((doc_id, row, payload.get(LANG_KEY)))
        if new:
            self._ids += [d for d, _, _ in new]
            self._langs += [lang for _, _, lang in new]
            self._vectors = np.vstack([self._vectors, np.stack([r for _, r, _ in new])])
        self._cache.clear()

    def vectors(self, lang: Langs = None) -> tuple[list[str], np.ndarray]:
        langs = lang_set(lang)
        if langs not in self._cache:
            keep = [i for i, x in enumerate(self._langs) if langs is None or x in langs]
            self._cache[langs] = ([self._ids[i] for i in keep], self._vectors[keep])
        return self._cache[langs]

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        lang: Langs = None,
        exact: bool = True,
        with_payload: bool = False,
    ) -> list[list[Hit]]:
        if with_payload:
            raise ValueError("ArrayStore keeps no payloads")
        ids, matrix = self.vectors(lang)
        if not ids:
            return [[] for _ in range(len(vectors))]
        scores = np.asarray(vectors, dtype=np.float32) @ matrix.T  # (n, n_docs)
        index, values = R.top_k_from_scores(scores, limit, ids)
        return [
            [Hit(ids[j], float(v)) for j, v in zip(r, s, strict=True)]
            for r, s in zip(index.tolist(), values.tolist(), strict=True)
        ]

    def count(self, lang: Langs = None) -> int:
        return len(self.vectors(lang)[0])

    def existing(self, doc_ids: Iterable[str]) -> dict[str, str | None]:
        return {d: self._content.get(d) for d in doc_ids if d in self._rows}

    def close(self) -> None:
        self._cache.clear()

    def __enter__(self) -> ArrayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
