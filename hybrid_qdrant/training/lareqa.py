"""Training pairs from the LAReQA sets (XQuAD-R, MLQA-R): question and gold sentence, per language.

The files are read by the evaluation loader (:func:`hybrid_qdrant.benchmarks.lareqa.load_lareqa`), so
training and evaluation agree on the gold sentence (the one whose span holds ``answer_start``), on the
questions left out, and on how ``context`` joins the paragraph to the sentence. Each query becomes a
pair with its gold sentence in its own language; the question id, shared by the parallel versions in
every language, is the group id.

Hard negatives (``hard_negatives=True``, as the paper trains on triplets): each pair gets a sentence of
its gold sentence's paragraph that is not gold, in the pair's language, so a cross-lingual combination
(query of one language, passage of another) gets a hard negative in its passage's language. The choice
among a paragraph's other sentences is seeded by the question id and language (stable across runs and
subsets). A paragraph of one sentence (about 7 % of MLQA-R's questions) falls back to the sentences of
the other paragraphs of the same article, then to those of the next paragraph in the file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybrid_qdrant.benchmarks.lareqa import load_lareqa
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)


def read_lareqa(
    name: str,
    path: str | Path | None = None,
    languages: Sequence[str] | None = None,
    context: bool = False,
    *,
    hard_negatives: bool = False,
) -> list[Pair]:
    """Read (question, gold sentence[, hard negative]) pairs of ``xquad-r`` or ``mlqa-r``.

    Args:
        name: ``xquad-r`` or ``mlqa-r``.
        path: folder with the ``{lang}.json`` files (or its parent); None downloads them to the cache.
        languages: languages to read; None reads all of the set's.
        context: the passage is the gold sentence followed by its paragraph.
        hard_negatives: give each pair a non-gold sentence of its paragraph (see the module docstring).

    Raises:
        DataError: unknown set or language, a missing or malformed file.
    """
    benchmark = load_lareqa(name, path, list(languages) if languages else None, context)
    passages = {p.doc_id: p for p in benchmark.passages}
    negatives = _Negatives(benchmark.passages) if hard_negatives else None
    pairs = []
    for query in benchmark.queries:
        gold = sorted(d for d in benchmark.qrels[query.query_id] if passages[d].lang == query.lang)
        negative = None
        if negatives is not None:
            negative = passages[negatives.pick(gold, f"{query.group_id}\0{query.lang}")].text
        pairs.append(Pair(query.text, passages[gold[0]].text, query.lang, query.group_id, negative))
    if benchmark.skipped:
        logger.info("%s: questions left out: %s", name, benchmark.skipped)
    return pairs


class _Negatives:
    """Non-gold sentences near a gold one, in its language: its paragraph, else its article, else the
    next paragraph of that language's file."""

    def __init__(self, passages) -> None:
        self.paragraphs: dict[tuple[str, str, str], list[str]] = {}
        self.articles: dict[tuple[str, str], list[str]] = {}
        for p in passages:  # doc ids "{lang}/{article}/{paragraph}/{sentence}", in file order
            lang, article, paragraph, _ = p.doc_id.split("/")
            self.paragraphs.setdefault((lang, article, paragraph), []).append(p.doc_id)
            self.articles.setdefault((lang, article), []).append(p.doc_id)
        self.order: dict[str, list[tuple[str, str, str]]] = {}  # per language, in file order
        for key in self.paragraphs:
            self.order.setdefault(key[0], []).append(key)

    def pick(self, gold: list[str], key: str) -> str:
        """A seeded choice (by ``key``) among the nearest non-gold sentences of ``gold[0]``'s language."""
        lang, article, paragraph, _ = gold[0].split("/")
        here = (lang, article, paragraph)
        exclude = set(gold)
        order = self.order[lang]
        pools = (
            self.paragraphs[here],
            self.articles[(lang, article)],
            self.paragraphs[order[(order.index(here) + 1) % len(order)]],
        )
        for pool in pools:
            options = [d for d in pool if d not in exclude]
            if options:
                seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
                return options[int(np.random.default_rng(seed).integers(len(options)))]
        raise DataError(f"no sentence other than the gold one near {gold[0]} to use as a hard negative")
