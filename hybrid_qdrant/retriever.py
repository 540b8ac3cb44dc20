"""Search an hq collection from an application: one object holding the store and the collection's encoder.

``Retriever.open("my-collection")`` opens the collection (embedded directory or server URL), loads the
encoder recorded in it (see ``encoding.source``) and answers ``search(texts, lang=..., k=...)`` with
hits carrying score and payload. One Retriever serves many threads (a web app's workers): the model and
the store are loaded once; query encoding is serialised by one lock (Hugging Face fast tokenizers are
not safe to call from several threads at once) and, on the embedded engine, each engine call by
another, so one request encodes while another searches. A server is queried concurrently.

The embedded engine lets one process open a collection at a time: while a Retriever holds one, other
processes (``hq ingest``, another app) cannot open it; ``hq collections list`` still can list it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.base import DOC_ID_KEY, GROUP_KEY, LANG_KEY, TEXT_KEY, Langs, lang_set

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One passage found for a query.

    Attributes:
        rank: 1-based position among the query's hits.
        doc_id / score / lang / text / group_id: from the point (score: higher is better).
        payload: the point's whole payload (``title``, other libraries' keys, ...).
    """

    rank: int
    doc_id: str
    score: float
    lang: str | None
    text: str | None
    group_id: str | None
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The hit as plain JSON-able values (what ``hq search --json`` prints, without the payload)."""
        return {
            "rank": self.rank,
            "score": self.score,
            "lang": self.lang,
            "doc_id": self.doc_id,
            "group_id": self.group_id,
            "text": self.text,
        }


class Retriever:
    """Batched, language-filtered search over one collection with the encoder it was built with.

    Args:
        store: an open ``ManagedStore`` bound to the collection.
        encoder: an ``Encoder`` producing the collection's vectors (checked by ``open``).
        exact: exhaustive search by default (no HNSW approximation); ``search(exact=...)`` overrides.
        owns_store: close the store with the Retriever.
    """

    def __init__(self, store, encoder, *, exact: bool = False, owns_store: bool = False) -> None:
        self.store = store
        self.encoder = encoder
        self.collection = store.collection
        self.exact = exact
        self._owns_store = owns_store
        self._encode_lock = threading.Lock()
        # qdrant-client serialises its local mode itself; a server takes concurrent requests
        concurrent = getattr(store, "engine", "") == "server"
        self._engine_lock = nullcontext() if concurrent else threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls,
        collection: str,
        *,
        location: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        adapter: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        exact: bool = False,
        encoder=None,
        settings=None,
        **store_options: Any,
    ) -> Retriever:
        """Open ``collection`` (or alias) with the encoder recorded in it.

        Args:
            collection: collection or alias name.
            location: embedded store directory (default ``.hq/qdrant``); ignored with ``url``.
            url / api_key: a Qdrant server (``open_store`` checks the key and the transport).
            model / adapter: load this model instead of the recorded one; its fingerprint must be the
                collection's (ModelError otherwise).
            device / batch_size: where the encoder runs, texts per forward pass.
            exact: default of ``search(exact=...)``.
            encoder: an already loaded ``Encoder`` to use instead (checked against the fingerprint).
            settings: ``EncoderSettings`` (prefixes, max length) for ``model`` when the collection
                records no encoder source (built before hq recorded it); ignored otherwise.
            **store_options: further ``open_store`` options (``timeout``, ``engine``, ...).

        Raises:
            StoreError: the collection does not exist, or the store cannot be opened.
            ModelError: the encoder cannot be loaded, or is not the one the collection was built with.
        """
        from hybrid_qdrant.encoding.source import load_encoder
        from hybrid_qdrant.store import open_store
        from hybrid_qdrant.store.compat import check_fingerprint

        store = open_store(
            location=location, url=url, api_key=api_key, collection=collection, **store_options
        )
        try:
            spec = store.spec()
            if spec is None:
                where = url or location or "the default location"
                raise StoreError(f"no collection '{collection}' at {where}; see hq collections list")
            if encoder is None:
                encoder = load_encoder(
                    collection,
                    spec.encoder,
                    spec.source,
                    model=model,
                    adapter=adapter,
                    settings=settings,
                    device=device,
                    batch_size=batch_size,
                )
            else:
                check_fingerprint(collection, spec.encoder, encoder.fingerprint)
            if encoder.dim != spec.dim:
                raise StoreError(
                    f"collection '{collection}' has dim {spec.dim}, the encoder gives {encoder.dim}"
                )
        except BaseException:
            store.close()
            raise
        logger.info("opened %s with %s", collection, getattr(encoder, "fingerprint", "?"))
        return cls(store, encoder, exact=exact, owns_store=True)

    def search(
        self,
        texts: Sequence[str],
        *,
        lang: str | None = None,
        langs: Sequence[str] | None = None,
        k: int = 10,
        exact: bool | None = None,
    ) -> list[list[SearchHit]]:
        """The top ``k`` passages of each text, best first (ties by doc id).

        Args:
            texts: query texts (a list; use ``search_one`` for one string). Encoded in batches with the
                collection's query prefix or prompt.
            lang: only passages of this language; ``langs``: of any of these; neither: all languages.
            k: hits per query.
            exact: exhaustive search (default: the Retriever's ``exact``).

        Returns:
            One list of ``SearchHit`` per text, in the order of ``texts``.
        """
        if isinstance(texts, str):
            raise TypeError("search takes a list of texts; use search_one(text) for one")
        texts = list(texts)
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError("query texts must be non-empty strings")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        filter_langs = _language_filter(lang, langs)
        if self._closed:
            raise StoreError(f"the retriever for collection '{self.collection}' is closed")
        if not texts:
            return []
        with self._encode_lock:
            vectors = np.asarray(self.encoder.encode_queries(texts), dtype=np.float32)  # (n, dim)
        with self._engine_lock:
            results = self._top(vectors, k, filter_langs, self.exact if exact is None else exact)
        return [[_search_hit(rank, hit) for rank, hit in enumerate(hits, start=1)] for hits in results]

    def _top(self, vectors: np.ndarray, k: int, langs: Langs, exact: bool) -> list[list[Any]]:
        """Each query's top ``k`` hits, a score tie across the k-th place broken by doc id as everywhere
        else: an engine returns the tied points of its choice at its limit, so one more than ``k`` is
        asked for, and more while a tie runs to the last hit that came back."""
        limit = k + 1
        while True:
            results = self.store.search(vectors, limit=limit, lang=langs, exact=exact, with_payload=True)
            if not any(len(hits) == limit and hits[k - 1].score == hits[-1].score for hits in results):
                return [hits[:k] for hits in results]
            limit *= 2

    def count(self, *, lang: str | None = None, langs: Sequence[str] | None = None) -> int:
        """Passages in the collection, optionally of one language (``lang``) or several (``langs``)."""
        filter_langs = _language_filter(lang, langs)
        with self._engine_lock:
            return self.store.count(filter_langs)

    def search_one(self, text: str, **options: Any) -> list[SearchHit]:
        """``search([text], ...)[0]``."""
        return self.search([text], **options)[0]

    def close(self) -> None:
        """Close the store if the Retriever opened it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_store:
            with self._engine_lock:
                self.store.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Retriever(collection={self.collection!r}, store={self.store!r})"


def _language_filter(lang: str | None, langs: Sequence[str] | None) -> Langs:
    if lang is not None and langs is not None:
        raise ValueError("give lang (one language) or langs (several), not both")
    if lang is not None:
        if not isinstance(lang, str) or not lang:
            raise ValueError(f"lang must be a language code, got {lang!r}")
        return lang
    if langs is not None:
        if isinstance(langs, str):
            raise TypeError("langs takes a list of language codes; use lang for one")
        return sorted(lang_set(list(langs)))
    return None


def _search_hit(rank: int, hit: Any) -> SearchHit:
    payload = dict(hit.payload or {})
    return SearchHit(
        rank=rank,
        doc_id=str(payload.get(DOC_ID_KEY, hit.doc_id)),
        score=float(hit.score),
        lang=payload.get(LANG_KEY),
        text=payload.get(TEXT_KEY),
        group_id=payload.get(GROUP_KEY),
        payload=payload,
    )
