"""Training pairs from the LAReQA sets (XQuAD-R, MLQA-R): question and gold sentence, per language.

The files are read by the evaluation loader (:func:`hybrid_qdrant.benchmarks.lareqa.load_lareqa`), so
training and evaluation agree on the gold sentence (the one whose span holds ``answer_start``), on the
questions left out, and on how ``context`` joins the paragraph to the sentence. Each query becomes a
pair with its gold sentence in its own language; the question id, shared by the parallel versions in
every language, is the group id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hybrid_qdrant.benchmarks.lareqa import load_lareqa
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)


def read_lareqa(
    name: str,
    path: str | Path | None = None,
    languages: Sequence[str] | None = None,
    context: bool = False,
) -> list[Pair]:
    """Read (question, gold sentence) pairs of ``xquad-r`` or ``mlqa-r``.

    Args:
        name: ``xquad-r`` or ``mlqa-r``.
        path: folder with the ``{lang}.json`` files (or its parent); None downloads them to the cache.
        languages: languages to read; None reads all of the set's.
        context: the passage is the gold sentence followed by its paragraph.

    Raises:
        DataError: unknown set or language, a missing or malformed file.
    """
    benchmark = load_lareqa(name, path, list(languages) if languages else None, context)
    passages = {p.doc_id: p for p in benchmark.passages}
    pairs = []
    for query in benchmark.queries:
        gold = [passages[d] for d in benchmark.qrels[query.query_id] if passages[d].lang == query.lang]
        pairs.append(Pair(query.text, gold[0].text, query.lang, query.group_id))
    if benchmark.skipped:
        logger.info("%s: questions left out: %s", name, benchmark.skipped)
    return pairs
