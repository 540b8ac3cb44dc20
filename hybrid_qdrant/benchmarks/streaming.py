"""Benchmarks whose corpus is streamed instead of held in memory (MIRACL: up to 32.9M passages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from hybrid_qdrant.types import Benchmark, Passage


@dataclass
class StreamedBenchmark(Benchmark):
    """A ``Benchmark`` whose passages come from a stream.

    ``passages`` holds only what fits in memory (empty for MIRACL); ``corpus()`` returns a fresh
    iterator over the remaining passages each time it is called, reading them from disk or the hub.

    Attributes:
        corpus: factory of passage iterators, or None when there is nothing to stream.
        doc_language: the language of a streamed passage by its doc id (the loader builds the ids,
            so it knows: MIRACL's are ``"{lang}/{docid}"``); None for an id it does not make.
    """

    corpus: Callable[[], Iterator[Passage]] | None = field(default=None, repr=False, compare=False)
    doc_language: Callable[[str], str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def streamed(self) -> bool:
        return self.corpus is not None

    def iter_passages(self) -> Iterator[Passage]:
        """``passages``, then the streamed corpus."""
        yield from self.passages
        if self.corpus is not None:
            yield from self.corpus()

    def passage_languages(self) -> Callable[[str], str | None]:
        """The in-memory passages' languages, then ``doc_language`` for streamed ones."""
        known = super().passage_languages()
        streamed = self.doc_language
        if streamed is None:
            return known

        def language(doc_id: str) -> str | None:
            lang = known(doc_id)
            return lang if lang is not None else streamed(doc_id)

        return language


__all__ = ["StreamedBenchmark"]
