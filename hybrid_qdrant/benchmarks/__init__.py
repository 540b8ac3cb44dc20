"""Benchmark loaders: LAReQA (XQuAD-R, MLQA-R), BEIR-format folders with ``lang``, and MIRACL.

What the returned ``Benchmark`` holds:

- ``xquad-r`` / ``mlqa-r``: every sentence candidate in ``passages`` (``"{lang}/{a}/{p}/{s}"``),
  one query per question and language (``"{lang}/{question id}"``, ``group_id`` = question id), qrels
  joining each query to its gold sentence in every loaded language, ``parallel=True``, ``skipped``
  counting questions LAReQA's rule leaves out (none in the released files), ``protocol`` naming the
  answer rule.
- ``beir``: the folder's corpus and the queries judged in ``qrels/{split}.tsv`` (default ``test``),
  ids as in the files, ``parallel`` True when every query has a ``group_id``.
- ``miracl``: a ``StreamedBenchmark``: ``passages == []``, topics and qrels of ``split`` (default
  ``dev``, ids ``"{lang}/{id}"``), ``parallel=False``, and ``corpus()`` streaming the passages.

Read passages through ``benchmark.iter_passages()`` to cover both kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hybrid_qdrant.benchmarks.beir import load_beir, write_beir
from hybrid_qdrant.benchmarks.lareqa import SPECS as LAREQA_SPECS
from hybrid_qdrant.benchmarks.lareqa import load_lareqa
from hybrid_qdrant.benchmarks.miracl import iter_miracl_corpus, load_miracl
from hybrid_qdrant.benchmarks.streaming import StreamedBenchmark
from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.types import Benchmark

BENCHMARKS = ("xquad-r", "mlqa-r", "beir", "miracl")


def load_benchmark(
    name: str,
    data_dir: str | Path | None = None,
    languages: Iterable[str] | str | None = None,
    context: bool = False,
    split: str | None = None,
    on_error: str = "stop",
    answer_rule: str = "lareqa",
) -> Benchmark:
    """Load a benchmark by name (``xquad-r``, ``mlqa-r``, ``beir``, ``miracl``).

    Args:
        name: which loader.
        data_dir: local files; None downloads LAReQA into the cache or reads MIRACL from the hub
            (required for ``beir``).
        languages: subset to load; None loads all.
        context: LAReQA only: encode each sentence with its paragraph (``lareqa.CONTEXT_TEMPLATE``).
        split: BEIR qrels split (default ``test``) or MIRACL split (default ``dev``); LAReQA sets have
            a single split and take None.
        on_error: BEIR: ``"skip"`` skips bad records and counts them (see ``load_beir``); the JSON
            files of LAReQA and the TSV files of MIRACL always stop at the first error.
        answer_rule: LAReQA only: ``lareqa`` (default, the released evaluation code's rule) or
            ``strict`` (see ``load_lareqa``).

    Raises:
        DataError: an unknown benchmark (naming the valid ones) or bad data.
        ConfigError: an option the benchmark does not take.
    """
    key = name.strip().lower()
    if key not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    if key in LAREQA_SPECS:
        if split is not None:
            raise ConfigError(f"{key} has a single split; got split={split!r}")
        return load_lareqa(key, data_dir, languages, context, answer_rule=answer_rule)
    if answer_rule != "lareqa":
        raise ConfigError(f"answer_rule applies to xquad-r and mlqa-r only, not {key}")
    if context:
        raise ConfigError(f"context applies to xquad-r and mlqa-r only, not {key}")
    if key == "beir":
        if data_dir is None:
            raise DataError("beir needs a data_dir: a folder with corpus.jsonl, queries.jsonl, qrels/")
        return load_beir(data_dir, split or "test", languages, on_error=on_error)
    return load_miracl(data_dir, languages, split or "dev")


__all__ = [
    "BENCHMARKS",
    "StreamedBenchmark",
    "iter_miracl_corpus",
    "load_benchmark",
    "load_beir",
    "load_lareqa",
    "load_miracl",
    "write_beir",
]
