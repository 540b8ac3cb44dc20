"""Shared fixtures: the keyword toy benchmark and a random parallel benchmark with vectors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hybrid_qdrant.types import Benchmark, Passage, Query  # noqa: E402

EN = {"g1": "The cat sits.", "g2": "The dog runs.", "g3": "The bird flies.", "g4": "The cat runs."}
DE = {"g1": "Die Katze sitzt.", "g2": "Der Hund rennt.", "g3": "Der Vogel fliegt.", "g4": "Die Katze rennt."}
QUERIES = {
    "q1": ("Which cat sits?", "Welche Katze sitzt?", "g1"),
    "q2": ("Does the cat run?", "Rennt die Katze?", "g2"),
}


def toy_benchmark() -> Benchmark:
    """Two languages, four parallel passages each, two parallel questions (hand-computed metrics)."""
    passages = [
        Passage(f"{lang}/{g}", text, lang, g)
        for lang, texts in (("en", EN), ("de", DE))
        for g, text in texts.items()
    ]
    queries, qrels = [], {}
    for qid, (en, de, gold) in QUERIES.items():
        for lang, text in (("en", en), ("de", de)):
            queries.append(Query(f"{lang}/{qid}", text, lang, qid))
            qrels[f"{lang}/{qid}"] = {f"en/{gold}": 1, f"de/{gold}": 1}
    return Benchmark("toy", ("en", "de"), passages, queries, qrels, parallel=True)


@pytest.fixture
def toy() -> Benchmark:
    return toy_benchmark()


def random_parallel(
    n_groups: int = 60,
    langs=("en", "de", "fr"),
    dim: int = 16,
    noise: float = 0.8,
    seed: int = 0,
    extra_per_lang: int = 5,
):
    """A parallel benchmark with vectors: translations = a group centre plus noise (language bias included).

    Returns:
        (benchmark, passage_vectors (n_passages, dim), query_vectors (n_queries, dim)).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, dim))
    shift = {lang: rng.standard_normal(dim) * 0.5 for lang in langs}
    passages, pvecs, queries, qvecs, qrels = [], [], [], [], {}
    for lang in langs:
        for g in range(n_groups):
            passages.append(Passage(f"{lang}/p{g}", f"passage {g} {lang}", lang, f"g{g}"))
            pvecs.append(centres[g] + shift[lang] + noise * rng.standard_normal(dim))
        for e in range(extra_per_lang):  # distractors with no query
            passages.append(Passage(f"{lang}/x{e}", f"extra {e} {lang}", lang, None))
            pvecs.append(rng.standard_normal(dim))
        for g in range(n_groups):
            queries.append(Query(f"{lang}/q{g}", f"question {g} {lang}", lang, f"g{g}"))
            qvecs.append(centres[g] + shift[lang] + noise * rng.standard_normal(dim))
            qrels[f"{lang}/q{g}"] = {f"{other}/p{g}": 1 for other in langs}
    pv = np.asarray(pvecs, dtype=np.float32)
    qv = np.asarray(qvecs, dtype=np.float32)
    pv /= np.linalg.norm(pv, axis=1, keepdims=True)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    return Benchmark("random", tuple(langs), passages, queries, qrels, parallel=True), pv, qv
