"""Data contracts shared by loaders, training, stores and evaluation.

The shapes follow BEIR so that every IR tool reads them:
``Qrels = {query_id: {doc_id: relevance}}`` and ``Run = {query_id: {doc_id: score}}``.
Language is metadata (a field), never part of a text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Qrels = dict[str, dict[str, int]]


def is_valid_unicode(text: str) -> bool:
    """False for a string that cannot be encoded as UTF-8 (an unpaired surrogate, e.g. from a JSON
    ``\\ud800`` escape): such text fails in tokenizers and on the wire, so loaders refuse it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Passage:
    """A retrieval candidate.

    Attributes:
        doc_id: unique across all languages of a benchmark (e.g. ``"de/12/3/0"``).
        text: the text that is encoded (after optional context is applied).
        lang: ISO 639-1 code.
        group_id: parallel-group id shared by translations of the same passage, if known.
        title: optional title (BEIR / MIRACL).
    """

    doc_id: str
    text: str
    lang: str
    group_id: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Query:
    """A query; ``group_id`` joins the parallel versions of one question across languages."""

    query_id: str
    text: str
    lang: str
    group_id: str | None = None


@dataclass(frozen=True)
class Pair:
    """A training pair: a query and its positive passage, optionally with a hard negative.

    ``group_id`` is shared by the translations of one logical QA pair; pairs with the same group and
    different languages make the cross-lingual combinations.
    """

    query: str
    passage: str
    lang: str
    group_id: str | None = None
    negative: str | None = None


@dataclass
class Benchmark:
    """A loaded evaluation set: passages and queries in several languages with relevance judgements.

    Attributes:
        name: benchmark name (``xquad-r``, ``mlqa-r``, ``miracl``, or a BEIR folder name).
        languages: the languages in a stable order.
        passages / queries: all of them, every language (a streamed benchmark keeps its corpus out of
            ``passages``: read them with ``iter_passages()``).
        qrels: relevance over all languages (a query's relevant passages in every language).
        parallel: True when queries and passages are translations joined by ``group_id`` (LAReQA),
            which makes cross-lingual and multilingual settings meaningful.
        skipped: counts of records the loader left out, by reason.
        skipped_examples: the first messages of bad records skipped (``on_error="skip"``).
        protocol: how the loader built the set where it has a choice (LAReQA: ``answer_rule``), so a
            report states it.
    """

    name: str
    languages: tuple[str, ...]
    passages: list[Passage]
    queries: list[Query]
    qrels: Qrels
    parallel: bool = True
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    protocol: dict[str, str] = field(default_factory=dict)

    @property
    def streamed(self) -> bool:
        """Whether passages come from a stream rather than ``passages`` (too many to hold)."""
        return False

    def iter_passages(self) -> Iterator[Passage]:
        """Every passage, in memory or streamed."""
        return iter(self.passages)

    def passage_languages(self) -> Callable[[str], str | None]:
        """doc id -> language of the benchmark's passages (None for an id it does not have), built once
        per call from ``passages``."""
        return {p.doc_id: p.lang for p in self.passages}.get
