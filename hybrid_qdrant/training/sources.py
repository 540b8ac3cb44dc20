"""Loading the configured training and validation pairs, and holding out validation groups."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.training.config import DataSource
from hybrid_qdrant.training.lareqa import read_lareqa
from hybrid_qdrant.training.mmarco import read_mmarco
from hybrid_qdrant.training.pairs import read_hf, read_records, summarize
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)


def load_source(source: DataSource) -> list[Pair]:
    """Read the pairs of one ``[[data.sources]]`` table."""
    if source.kind in ("jsonl", "parquet"):
        return read_records(source.path, lang=source.lang)
    if source.kind == "hf":
        return read_hf(source.path, source.split, source.subset, source.columns, source.lang)
    if source.kind == "lareqa":
        return read_lareqa(
            source.name,
            source.path or None,
            source.languages or None,
            source.context,
            hard_negatives=source.hard_negatives == "paragraph",
        )
    if source.kind == "mmarco":
        return read_mmarco(
            source.path,
            source.languages,
            source.queries,
            source.collection,
            source.triples,
            source.max_queries or None,
            source.names,
        )
    raise ValueError(f"unknown source kind {source.kind!r}")


def load_pairs(sources: Sequence[DataSource], languages: Sequence[str] = ()) -> list[Pair]:
    """Concatenate the sources' pairs, keeping only ``languages`` when given.

    Raises:
        DataError: a bad source, or no pair left.
    """
    pairs = [pair for source in sources for pair in load_source(source)]
    if languages:
        wanted = set(languages)
        pairs = [pair for pair in pairs if pair.lang in wanted]
    if not pairs:
        raise DataError(f"no training pairs{' in languages ' + ', '.join(languages) if languages else ''}")
    logger.info("loaded %d pairs: %s", len(pairs), summarize(pairs))
    return pairs


def holdout(pairs: Sequence[Pair], fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into (train, held out) by group, so translations never straddle the split.

    A group (or a groupless pair) is held out when a seeded hash of its id falls below ``fraction``:
    the split is stable under reordering and under adding data.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    train, held = [], []
    for number, pair in enumerate(pairs):
        key = pair.group_id if pair.group_id is not None else f"\0{pair.lang}\0{pair.query}\0{number}"
        digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
        (held if int.from_bytes(digest, "big") / 2**64 < fraction else train).append(pair)
    return train, held
