"""The training set as virtual rows: monolingual pairs and cross-lingual combinations.

A cross-lingual example joins the query of one pair with the passage of a translation of that pair (same
group, another language), so it is no single stored record. :class:`PairIndex` numbers every usable
example:

* rows ``[0, n_pairs)`` are the pairs themselves (query and passage of pair ``i``, one language);
* rows ``[n_pairs, n_rows)`` are the cross-lingual combinations: for each group, every ordered
  (query pair ``a``, passage pair ``b``) with ``lang[a] != lang[b]``, contiguous per group.

The Hugging Face dataset handed to the trainer stores only the pair ids of each row (``q``, ``p``) and
resolves them to text on access (``set_transform``), so the collator sees exactly the text columns
``query``, ``passage`` (and ``negative``, the hard negative of the passage's pair); language and group
live here, on the sampler's side, and never reach the tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Pair

logger = logging.getLogger(__name__)

#: Groups are expanded into cross-lingual rows this many at a time (bounds the temporary arrays).
_CHUNK = 20_000


class PairResolver:
    """A batched ``set_transform`` turning stored pair ids into the text columns of the loss."""

    def __init__(self, queries: list[str], passages: list[str], negatives: list[str] | None) -> None:
        self.queries = queries
        self.passages = passages
        self.negatives = negatives

    def __call__(self, batch: dict[str, list[int]]) -> dict[str, list[str]]:
        out = {
            "query": [self.queries[q] for q in batch["q"]],
            "passage": [self.passages[p] for p in batch["p"]],
        }
        if self.negatives is not None:
            out["negative"] = [self.negatives[p] for p in batch["p"]]
        return out


class PairIndex:
    """Numbered mono and cross-lingual examples over a list of pairs, with their dedup keys.

    Args:
        pairs: the training pairs; pairs with ``group_id=None`` are monolingual only.
        negatives: use the pairs' hard negatives: True requires one on every pair, False ignores them,
            None uses them when every pair has one.

    Raises:
        DataError: no pairs, or ``negatives=True`` with pairs that lack one.
    """

    def __init__(self, pairs: Sequence[Pair], negatives: bool | None = None) -> None:
        if not pairs:
            raise DataError("no training pairs")
        with_negative = sum(p.negative is not None for p in pairs)
        if negatives and with_negative < len(pairs):
            raise DataError(
                f"hard negatives requested, but {len(pairs) - with_negative} of {len(pairs)} pairs have none"
            )
        if negatives is None:
            negatives = with_negative == len(pairs)
            if 0 < with_negative < len(pairs):
                logger.warning(
                    "only %d of %d pairs have a hard negative: training without hard negatives",
                    with_negative,
                    len(pairs),
                )
        self.has_negatives = bool(negatives)
        self.n_pairs = len(pairs)
        self.languages: tuple[str, ...] = tuple(sorted({p.lang for p in pairs}))
        lang_code = {lang: i for i, lang in enumerate(self.languages)}
        self.lang = np.fromiter((lang_code[p.lang] for p in pairs), dtype=np.int16, count=len(pairs))  # (n,)

        group_code: dict[object, int] = {}
        group = np.empty(len(pairs), dtype=np.int64)  # (n,) groupless pairs get a group of their own
        for i, pair in enumerate(pairs):
            key = pair.group_id if pair.group_id is not None else ("\0", i)
            group[i] = group_code.setdefault(key, len(group_code))
        self.group = group

        text_code: dict[str, int] = {}
        self.query_text = np.fromiter(
            (text_code.setdefault(p.query, len(text_code)) for p in pairs), np.int64, len(pairs)
        )
        self.passage_text = np.fromiter(
            (text_code.setdefault(p.passage, len(text_code)) for p in pairs), np.int64, len(pairs)
        )
        self.negative_text = np.fromiter(
            (text_code.setdefault(p.negative, len(text_code)) if self.has_negatives else -1 for p in pairs),
            np.int64,
            len(pairs),
        )
        self._resolver = PairResolver(
            [p.query for p in pairs],
            [p.passage for p in pairs],
            [p.negative for p in pairs] if self.has_negatives else None,
        )
        self.mono_rows: dict[str, np.ndarray] = {
            lang: np.flatnonzero(self.lang == code) for lang, code in lang_code.items()
        }
        self._build_cross()

    def _build_cross(self) -> None:
        """Enumerate the cross-lingual combinations, group by group."""
        order = np.argsort(self.group, kind="stable")  # (n,)
        sorted_group = self.group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])  # (n_groups,)
        sizes = np.diff(np.r_[starts, self.n_pairs])
        queries, passages, counts = [], [], []
        for size in np.unique(sizes[sizes >= 2]):
            grid_q, grid_p = (g.ravel() for g in np.meshgrid(np.arange(size), np.arange(size), indexing="ij"))
            group_starts = starts[sizes == size]
            for chunk in range(0, len(group_starts), _CHUNK):
                members = order[group_starts[chunk : chunk + _CHUNK, None] + np.arange(size)]  # (g, size)
                q, p = members[:, grid_q], members[:, grid_p]  # (g, size * size)
                cross = self.lang[q] != self.lang[p]  # (g, size * size)
                per_group = cross.sum(axis=1)  # (g,)
                queries.append(q[cross])  # row-major: each group's combinations stay contiguous
                passages.append(p[cross])
                counts.append(per_group[per_group > 0])
        self.cross_query = np.concatenate(queries).astype(np.int32) if queries else np.zeros(0, np.int32)
        self.cross_passage = np.concatenate(passages).astype(np.int32) if passages else np.zeros(0, np.int32)
        counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        #: Row range of cross group j: [cross_offsets[j], cross_offsets[j + 1]); (n_cross_groups + 1,)
        self.cross_offsets = self.n_pairs + np.r_[0, np.cumsum(counts)].astype(np.int64)

    @property
    def n_rows(self) -> int:
        """Mono rows plus cross-lingual rows."""
        return self.n_pairs + len(self.cross_query)

    @property
    def n_cross_groups(self) -> int:
        """Groups with pairs in at least two languages."""
        return len(self.cross_offsets) - 1

    def pair_ids(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (query pair, passage pair) of each row."""
        rows = np.asarray(rows, dtype=np.int64)
        cross = rows >= self.n_pairs
        q, p = rows.copy(), rows.copy()
        q[cross] = self.cross_query[rows[cross] - self.n_pairs]
        p[cross] = self.cross_passage[rows[cross] - self.n_pairs]
        return q, p

    def keys(self, row: int) -> tuple[int, tuple[int, ...]]:
        """The group and the text ids of one row: two rows that share any of them must not share a batch."""
        if row < self.n_pairs:
            q = p = row
        else:
            q, p = int(self.cross_query[row - self.n_pairs]), int(self.cross_passage[row - self.n_pairs])
        texts = (int(self.query_text[q]), int(self.passage_text[p]))
        if self.has_negatives:
            texts += (int(self.negative_text[p]),)
        return int(self.group[q]), texts

    def languages_of(self, rows: np.ndarray) -> tuple[list[str], list[str]]:
        """The query and passage languages of each row."""
        q, p = self.pair_ids(rows)
        return [self.languages[i] for i in self.lang[q]], [self.languages[i] for i in self.lang[p]]

    @cached_property
    def dataset(self):
        """The ``datasets.Dataset`` of all rows: stored pair ids, text columns on access."""
        import datasets

        q = np.r_[np.arange(self.n_pairs, dtype=np.int32), self.cross_query]  # (n_rows,)
        p = np.r_[np.arange(self.n_pairs, dtype=np.int32), self.cross_passage]  # (n_rows,)
        return datasets.Dataset.from_dict({"q": q, "p": p}).with_transform(self._resolver)

    def describe(self) -> str:
        """One line: pairs per language, parallel groups, cross-lingual rows."""
        per_lang = ", ".join(f"{lang} {len(rows)}" for lang, rows in self.mono_rows.items())
        return (
            f"{self.n_pairs} pairs ({per_lang}); {self.n_cross_groups} parallel groups; "
            f"{len(self.cross_query)} cross-lingual combinations; "
            f"hard negatives: {'yes' if self.has_negatives else 'no'}"
        )
