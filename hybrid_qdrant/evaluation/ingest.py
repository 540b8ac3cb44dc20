"""Streaming ingestion: passages -> encoder (length-sorted batches) -> store, encoding and upserts overlapped.

Memory is bounded by ``block_size`` passages in flight (plus ``queue_size`` encoded blocks waiting for
their upsert), whatever the corpus size. Ingestion is idempotent and resumable: point ids are derived
from doc ids, and passages already stored with the same content are skipped before encoding, so a
re-run after an interruption encodes and writes only what is missing. Every point carries a hash of
what it was built from (``content_hash``: text, language, group, title); a passage whose stored hash
differs (the source changed, or the point predates the hash) is encoded again and overwritten, never
kept stale.

The processes of a ``torchrun`` / ``accelerate launch`` share one ingestion by block: block k of the
stream belongs to process k mod W; into a server each writes its own blocks, into the embedded store
process 0 writes what all encode (see ``evaluation.launch``). Blocks are the same whatever the number
of processes, and the encoder fixes its batches within a block (``encoding.pool``), so W processes write
exactly the points and vectors one process writes.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybrid_qdrant.encoding.source import source_json
from hybrid_qdrant.errors import ConfigError, DataError, StoreError
from hybrid_qdrant.evaluation.launch import Launch
from hybrid_qdrant.store.base import (
    CONTENT_KEY,
    DOC_ID_KEY,
    GROUP_KEY,
    LANG_KEY,
    TEXT_KEY,
    CollectionSpec,
    DataStore,
)
from hybrid_qdrant.store.payload_compat import check_formats, compat_payload, formats_of
from hybrid_qdrant.types import Passage, is_valid_unicode

logger = logging.getLogger(__name__)

_DONE = object()


@dataclass
class IngestStats:
    """What an ingestion did.

    Attributes:
        seen: passages read from the source.
        encoded: passages encoded and written by this run.
        already_stored: passages skipped because the collection already held them, unchanged.
        replaced: passages stored with other content (or without a content hash), encoded again.
        skipped: bad records left out (only with ``on_error="skip"``), by reason.
        per_language: valid passages read, by language (what the collection must hold afterwards).
        skipped_examples: up to 20 ``"doc_id: reason"`` lines for the report.
        seconds: wall time; ``encode_seconds`` and ``upsert_seconds`` are the busy times of each stage.
    """

    seen: int = 0
    encoded: int = 0
    already_stored: int = 0
    replaced: int = 0
    per_language: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    upsert_seconds: float = 0.0

    def skip(self, doc_id: str, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(f"{doc_id}: {reason}")


def content_hash(passage: Passage) -> str:
    """A hash of what a point is built from: text, language, parallel group and title."""
    parts = (passage.text, passage.lang, passage.group_id or "", passage.title or "")
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def collection_spec(encoder) -> CollectionSpec:
    """The spec of a collection for ``encoder``: its dim and fingerprint, and how to load it again (the
    source, recorded when the collection is created; see ``encoding.source``)."""
    return CollectionSpec(dim=encoder.dim, encoder=encoder.fingerprint, source=source_json(encoder))


def payload_of(passage: Passage, store_text: bool = True, formats: Sequence[str] = ()) -> dict[str, Any]:
    """A passage's payload: lang, doc id, parallel group, text, content hash (the store adds the encoder
    tag), and the keys other libraries read for ``formats`` (see ``store.payload_compat``)."""
    payload: dict[str, Any] = {
        LANG_KEY: passage.lang,
        DOC_ID_KEY: passage.doc_id,
        CONTENT_KEY: content_hash(passage),
    }
    if passage.group_id is not None:
        payload[GROUP_KEY] = passage.group_id
    if store_text:
        payload[TEXT_KEY] = passage.text
    if passage.title:
        payload["title"] = passage.title
    if formats:
        payload.update(compat_payload(payload, formats))
    return payload


class _Validator:
    """Checks records one by one: empty text, missing or unknown language, conflicting duplicate ids."""

    def __init__(
        self,
        languages: Sequence[str] | None,
        on_error: str,
        stats: IngestStats,
        check_duplicates: bool = True,
    ) -> None:
        if on_error not in ("stop", "skip"):
            raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
        self.languages = set(languages) if languages else None
        self.on_error = on_error
        self.stats = stats
        self.check_duplicates = check_duplicates
        self.digests: dict[str, bytes] = {}

    def check(self, passage: Passage) -> bool:
        """True for a passage to write; False for a skipped one or an exact duplicate (counted)."""
        self.stats.seen += 1
        reason = None
        digest = hashlib.blake2b(passage.text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if not passage.doc_id:
            reason = "empty doc id"
        elif not passage.text or not passage.text.strip():
            reason = "empty text"
        elif not is_valid_unicode(passage.text) or not is_valid_unicode(passage.doc_id):
            reason = "invalid Unicode (an unpaired surrogate)"
        elif not passage.lang:
            reason = "missing language"
        elif self.languages is not None and passage.lang not in self.languages:
            reason = f"unknown language {passage.lang!r}"
        elif self.check_duplicates and passage.doc_id in self.digests:
            if self.digests[passage.doc_id] != digest:
                reason = "duplicate doc id with a different text"
            else:
                return False  # an exact duplicate: written once
        if reason is None:
            if self.check_duplicates:
                self.digests[passage.doc_id] = digest
            self.stats.per_language[passage.lang] = self.stats.per_language.get(passage.lang, 0) + 1
            return True
        if self.on_error == "stop":
            raise DataError(f"passage {passage.doc_id!r}: {reason}")
        self.stats.skip(passage.doc_id, reason)
        return False


def _blocks(passages: Iterable[Passage], size: int) -> Iterator[list[Passage]]:
    block: list[Passage] = []
    for passage in passages:
        block.append(passage)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def ingest(
    passages: Iterable[Passage],
    encoder,
    store: DataStore | None,
    *,
    block_size: int = 2048,
    upsert_batch: int = 512,
    queue_size: int = 2,
    overlap: bool = True,
    resume: bool = True,
    on_error: str = "stop",
    languages: Sequence[str] | None = None,
    store_text: bool = True,
    check_duplicates: bool = True,
    progress: Callable[[int], None] | None = None,
    payload_compat: Sequence[str] | None = None,
    launch: Launch | None = None,
    relay: bool = False,
) -> IngestStats:
    """Encode passages and write them to the store's collection.

    Args:
        passages: any iterable (streamed; never materialised).
        encoder: an ``Encoder`` (a ``CachedEncoder`` reuses cached embeddings).
        store: the target collection; created for the encoder's dim and fingerprint if missing. None in
            the processes of a relayed launch other than process 0.
        block_size: passages encoded per block (sorted by length inside a block); the unit a launch's
            processes share out.
        upsert_batch: points per upsert request.
        queue_size: encoded blocks that may wait for their upsert (bounds memory).
        overlap: upsert in a background thread while the next block encodes.
        resume: skip passages the collection already holds (one existence check per block).
        on_error: ``"stop"`` raises DataError at the first bad record; ``"skip"`` counts and skips.
        languages: allowed language codes (None: any).
        store_text: keep the passage text in the payload.
        check_duplicates: catch a doc id that comes back with another text (keeps 8 bytes per passage
            in memory; switch off for corpora of many millions, whose memory must not grow).
        progress: called with the number of passages handled after each block.
        payload_compat: also write the payload keys of these libraries (``langchain``, ``llamaindex``;
            see ``store.payload_compat``); None keeps what an existing collection holds. A collection
            keeps the layout it was built with: another one is refused (ConfigError).
        launch: this process's place in a distributed launch (``evaluation.launch``): it encodes the
            blocks it owns (block k: process k mod W) and, unless ``relay``, writes them itself.
        relay: the launch writes through process 0 (an embedded store, which one process may open):
            process 0, the only one given the store, checks every block, tells each process what of its
            block to encode, gathers the vectors and writes them. Every process must call this with the
            same passages.

    Returns:
        IngestStats: this process's (``merge_stats`` combines a launch's; with ``relay``, process 0's
        are the whole launch's).
    """
    if block_size < 1 or upsert_batch < 1 or queue_size < 1:
        raise ValueError("block_size, upsert_batch and queue_size must be positive")
    launch = launch or Launch()
    relay = relay and launch.distributed
    if (store is None) != (relay and not launch.main):
        raise ValueError("every process is given the store, except the processes of a relay other than 0")
    start = time.perf_counter()
    stats = IngestStats()
    validator = _Validator(languages, on_error, stats, check_duplicates)
    spec = collection_spec(encoder)
    requested = None if payload_compat is None else check_formats(payload_compat)
    checked = isinstance(passages, Sequence)
    if checked:  # in memory: every record is checked before anything is created, encoded or written
        passages = [p for p in passages if validator.check(p)]
    # an existing collection is checked against the encoder now; a new one is created with its first
    # points, so a run that fails before writing anything leaves no empty collection behind
    exists = store is not None and (store.exists() if hasattr(store, "exists") else True)
    if exists:
        store.ensure_collection(spec)
    formats = _payload_formats(store, exists, requested)
    if formats and not store_text:
        raise ConfigError("payloads for other libraries need the passage text (store_text=True)")

    def create() -> None:
        try:
            store.ensure_collection(spec)
        except StoreError:
            if not launch.distributed or not store.exists():
                raise
            store.ensure_collection(spec)  # another process of the launch created it first: check it

    def write(ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        nonlocal exists
        t0 = time.perf_counter()
        if not exists:
            create()
            exists = True
        for i in range(0, len(ids), upsert_batch):
            store.upsert(
                ids[i : i + upsert_batch], vectors[i : i + upsert_batch], payloads[i : i + upsert_batch]
            )
        stats.upsert_seconds += time.perf_counter() - t0

    def missing(good: list[Passage]) -> list[Passage]:
        """The passages of a block the collection lacks (or holds with other content), sorted by length."""
        if resume and good and exists:
            stored = store.existing([p.doc_id for p in good])
            current = {p.doc_id for p in good if p.doc_id in stored and stored[p.doc_id] == content_hash(p)}
            stats.already_stored += len(current)
            stats.replaced += len(stored) - len(current)
            good = [p for p in good if p.doc_id not in current]
        return sorted(good, key=lambda p: len(p.text))

    def encode(todo: list[Passage]) -> np.ndarray:
        t0 = time.perf_counter()
        vectors = encoder.encode_passages([p.text for p in todo])  # (n, dim)
        stats.encode_seconds += time.perf_counter() - t0
        return vectors

    pending: queue.Queue = queue.Queue(maxsize=queue_size)
    failure: list[BaseException] = []

    def writer() -> None:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if failure:
                continue  # drain after an error so the producer never blocks
            try:
                write(*item)
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)

    def put(todo: list[Passage], vectors: np.ndarray) -> bool:
        """Hand a block's points to the writer; False once writing has failed."""
        payloads = [payload_of(p, store_text, formats) for p in todo]
        item = ([p.doc_id for p in todo], vectors, payloads)
        if not thread:
            write(*item)
        elif failure:
            return False
        else:
            pending.put(item)
        stats.encoded += len(todo)
        return True

    thread = None
    if overlap and store is not None:
        thread = threading.Thread(target=writer, name="hq-upsert", daemon=True)
        thread.start()
    blocks = (
        (block, block if checked else [p for p in block if validator.check(p)])
        for block in _blocks(passages, block_size)
    )
    try:
        if relay:
            _relay(blocks, launch, missing, encode, put, progress)
        else:
            for index, (block, good) in enumerate(blocks):
                if launch.owner(index) == launch.rank:
                    todo = missing(good)
                    if todo and not put(todo, encode(todo)):
                        break
                if progress:
                    progress(len(block))
    finally:
        if thread:
            pending.put(_DONE)
            thread.join()
    if failure:
        raise failure[0]
    stats.seconds = time.perf_counter() - start
    if stats.replaced:
        logger.warning(
            "%d stored passages had other content (or none recorded): encoded again and overwritten",
            stats.replaced,
        )
    logger.info(
        "ingested %d passages (%d already stored, %d skipped) in %.1f s",
        stats.encoded,
        stats.already_stored,
        sum(stats.skipped.values()),
        stats.seconds,
    )
    return stats


def _payload_formats(store, exists: bool, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The payload formats to write: those of the collection's points (one sampled), else the requested."""
    sample = None
    if exists and hasattr(store, "iter_records"):
        sample = next(iter(store.iter_records(with_vectors=False, batch=1)), None)
    if sample is None:
        return requested or ()
    held = formats_of(sample.payload)
    if requested is not None and requested != held:
        raise ConfigError(
            f"collection '{getattr(store, 'collection', '?')}' holds payloads for "
            f"{', '.join(held) or 'hq only'}, not {', '.join(requested) or 'hq only'}; a collection keeps "
            "its payload layout: use another --collection, or --recreate (the embedding cache saves "
            "re-encoding)"
        )
    return held


def _relay(blocks, launch: Launch, missing, encode, put, progress) -> None:
    """A launch writing through process 0, in rounds of one block per process: process 0 checks the
    round's blocks and sends each process the positions to encode in its block; each encodes its own;
    process 0 gathers the vectors and hands every block to its writer, in stream order."""
    for round_ in _batched(blocks, launch.world):
        plans = None
        if launch.main:
            plans = []
            for _, good in round_:
                todo = missing(good)
                position = {id(p): i for i, p in enumerate(good)}
                plans.append([position[id(p)] for p in todo])
        plans = launch.broadcast(plans)
        mine = None
        if launch.rank < len(round_) and plans[launch.rank]:
            good = round_[launch.rank][1]
            mine = encode([good[i] for i in plans[launch.rank]])
        gathered = launch.gather(mine)
        if launch.main:
            for (block, good), plan, vectors in zip(round_, plans, gathered, strict=False):
                if plan and not put([good[i] for i in plan], vectors):
                    return
                if progress:
                    progress(len(block))
        elif progress:
            for block, _ in round_:
                progress(len(block))


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def merge_stats(parts: Sequence[IngestStats]) -> IngestStats:
    """One launch's ingestion from its processes' stats: what every process read and checked (the same
    in each) from the first, what each encoded, found stored or replaced summed, the longest wall time."""
    first = parts[0]
    return IngestStats(
        seen=first.seen,
        encoded=sum(p.encoded for p in parts),
        already_stored=sum(p.already_stored for p in parts),
        replaced=sum(p.replaced for p in parts),
        per_language=dict(first.per_language),
        skipped=dict(first.skipped),
        skipped_examples=list(first.skipped_examples),
        seconds=max(p.seconds for p in parts),
        encode_seconds=sum(p.encode_seconds for p in parts),
        upsert_seconds=sum(p.upsert_seconds for p in parts),
    )
