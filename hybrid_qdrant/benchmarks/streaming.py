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
    Consumers should read passages through ``iter_passages`` so both kinds of benchmark work.

    Attributes:
        corpus: factory of passage iterators, or None when there is nothing to stream.
    """

    corpus: Callable[[], Iterator[Passage]] | None = field(default=None, repr=False, compare=False)


def iter_passages(benchmark: Benchmark) -> Iterator[Passage]:
    """Every passage of a benchmark: ``benchmark.passages``, then its streamed corpus if it has one."""
    yield from benchmark.passages
    corpus = getattr(benchmark, "corpus", None)
    if corpus is not None:
        yield from corpus()


__all__ = ["StreamedBenchmark", "iter_passages"]
