"""Training pairs from mMARCO-style files: per-language queries and collection, shared id triples.

mMARCO translates MS MARCO into many languages and keeps the ids: a query id and a passage id name the
same query and passage in every language. A triples file (``qid<TAB>positive pid<TAB>negative pid``,
the BM25 negatives of MS MARCO) therefore gives, in each language, a query, its positive passage and a
hard negative; the query id is the group id that joins the translations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.training.pairs import open_text
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)

DEFAULT_QUERIES = "{lang}/queries.tsv"
DEFAULT_COLLECTION = "{lang}/collection.tsv"
DEFAULT_TRIPLES = "triples.tsv"


def read_mmarco(
    root: str | Path,
    languages: Sequence[str],
    queries: str = DEFAULT_QUERIES,
    collection: str = DEFAULT_COLLECTION,
    triples: str = DEFAULT_TRIPLES,
    max_queries: int | None = None,
    names: Mapping[str, str] | None = None,
) -> list[Pair]:
    """Read (query, positive, BM25 negative) pairs in every language; one pair per query id.

    Args:
        root: the folder the file patterns are relative to.
        languages: language codes to read.
        queries / collection: per-language TSV files (``id<TAB>text``); ``{lang}`` is replaced by the
            code and ``{name}`` by ``names[code]`` (mMARCO names its files ``german_queries.train.tsv``).
        triples: the id triples file, shared by all languages; the first triple of each query is used.
        max_queries: read at most this many query ids (the first ones in the triples file).
        names: language code -> the name used in file names.

    Raises:
        DataError: a missing file, or a line that is not tab-separated ids and text.
    """
    root = Path(root).expanduser()
    if not languages:
        raise DataError("mmarco: no languages given")
    chosen = _first_triples(root / triples, max_queries)
    qids = set(chosen)
    pids = {pid for pos, neg in chosen.values() for pid in (pos, neg)}
    pairs: list[Pair] = []
    for lang in languages:
        fill = {"lang": lang, "name": (names or {}).get(lang, lang)}
        query_text = _read_tsv(root / queries.format(**fill), qids)
        passage_text = _read_tsv(root / collection.format(**fill), pids)
        kept = 0
        for qid, (pos, neg) in chosen.items():
            if qid in query_text and pos in passage_text and neg in passage_text:
                pairs.append(
                    Pair(query_text[qid], passage_text[pos], lang, group_id=qid, negative=passage_text[neg])
                )
                kept += 1
        if kept < len(chosen):
            missing = len(chosen) - kept
            logger.warning("mmarco %s: %d of %d queries lack a text: left out", lang, missing, len(chosen))
        logger.info("mmarco %s: %d pairs", lang, kept)
    return pairs


def _first_triples(path: Path, max_queries: int | None) -> dict[str, tuple[str, str]]:
    """qid -> (positive pid, negative pid) from the first triple of each query, in file order."""
    chosen: dict[str, tuple[str, str]] = {}
    with open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or not all(f.strip() for f in fields):
                raise DataError(f"{path}:{number}: expected 3 tab-separated ids (qid, positive, negative)")
            qid, pos, neg = (f.strip() for f in fields)
            if qid not in chosen:
                if max_queries is not None and len(chosen) >= max_queries:
                    break
                chosen[qid] = (pos, neg)
    if not chosen:
        raise DataError(f"{path}: no triples")
    return chosen


def _read_tsv(path: Path, wanted: set[str]) -> dict[str, str]:
    """id -> text for the wanted ids of an ``id<TAB>text`` file."""
    texts = {}
    with open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, sep, text = line.rstrip("\n").partition("\t")
            if not sep:
                raise DataError(f"{path}:{number}: expected an id, a tab and a text")
            key = key.strip()
            if key in wanted:
                if not text.strip():
                    raise DataError(f"{path}:{number}: empty text for id {key}")
                texts[key] = text
    return texts
