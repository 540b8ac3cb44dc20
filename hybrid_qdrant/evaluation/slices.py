"""The evaluation settings, their slices, and the keys reports use for them.

Settings (arXiv 2408.10536, section 3.2; LAReQA):
    mono  - queries of language X against the passages of X;
    cross - queries of X against the passages of one other language Y, every ordered pair X != Y;
    multi - queries of X against the pooled passages of the evaluated languages.

A slice is one (setting, query language, passage language). Its name is ``{setting}/{q}-{p}``
(``cross/de-en``; multi: ``multi/de-all``), the key of its per-query values; a report's metric keys are
``{setting}/{metric}`` (the macro average) and ``{slice name}/{metric}``. These functions are the
only place the format is written or read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.types import Benchmark

logger = logging.getLogger(__name__)

SETTINGS = ("mono", "cross", "multi")
POOLED = "all"


@dataclass(frozen=True)
class Slice:
    """One evaluation slice: a setting, the query language and the passage language (None: pooled)."""

    setting: str
    query_lang: str
    passage_lang: str | None

    @property
    def key(self) -> str:
        """``de-de`` (mono), ``de-en`` (cross), ``de-all`` (multi)."""
        return f"{self.query_lang}-{self.passage_lang or POOLED}"

    @property
    def name(self) -> str:
        """``{setting}/{q}-{p}``: the slice's key in reports and per-query files."""
        return f"{self.setting}/{self.key}"

    def metric(self, metric: str) -> str:
        """The report key of one of this slice's metrics: ``cross/de-en/map``."""
        return f"{self.name}/{metric}"

    @classmethod
    def parse(cls, name: str) -> Slice:
        """The slice of ``{setting}/{q}-{p}`` (ValueError for anything else)."""
        setting, _, key = name.partition("/")
        query_lang, _, passage_lang = key.partition("-")
        if setting not in SETTINGS or not query_lang or not passage_lang or "/" in key:
            raise ValueError(f"not a slice name: {name!r}")
        return cls(setting, query_lang, None if passage_lang == POOLED else passage_lang)


def grid_slice(query_lang: str, passage_lang: str) -> Slice:
    """The cell of the language grid (tables, heatmap): mono on the diagonal, cross elsewhere."""
    setting = "mono" if query_lang == passage_lang else "cross"
    return Slice(setting, query_lang, passage_lang)


def setting_metric(setting: str, metric: str) -> str:
    """The report key of a setting's macro average: ``cross/map``."""
    return f"{setting}/{metric}"


def slices_for(
    benchmark: Benchmark, settings: tuple[str, ...], languages: tuple[str, ...] | None
) -> list[Slice]:
    """The slices of ``settings`` over ``languages`` (None: the benchmark's).

    Raises:
        ConfigError: a language the benchmark does not have (naming the ones it has).
    """
    langs = list(languages or benchmark.languages)
    unknown = [lang for lang in langs if lang not in benchmark.languages]
    if unknown:
        raise ConfigError(
            f"unknown language(s) {', '.join(unknown)} for {benchmark.name}; "
            f"it has {', '.join(benchmark.languages)}"
        )
    out: list[Slice] = []
    if "mono" in settings:
        out += [Slice("mono", lang, lang) for lang in langs]
    if "cross" in settings:
        if not benchmark.parallel:
            logger.warning("%s has no parallel groups: the cross setting is skipped", benchmark.name)
        else:
            out += [Slice("cross", q, p) for q in langs for p in langs if q != p]
    if "multi" in settings:
        out += [Slice("multi", lang, None) for lang in langs]
    return out


__all__ = ["POOLED", "SETTINGS", "Slice", "grid_slice", "setting_metric", "slices_for"]
