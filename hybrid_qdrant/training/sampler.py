"""Hybrid batches: each batch wholly monolingual (probability alpha) or wholly cross-lingual.

A monolingual batch draws every example from one language (query and passage in that language); a
cross-lingual batch draws, for each example, a parallel group and one of its (query language X, passage
language Y != X) combinations. No batch holds two examples of one group, or a text twice (query, passage
or negative): either would be a false in-batch negative.

The sampler is pure and restartable: epoch ``e`` is a function of ``seed + e`` only (``set_epoch``),
``len`` is exact, and nothing carries over between epochs. Under DDP it emits ``world_size`` batches per
optimizer step, consecutive, of the same kind and language and disjoint from each other (one global batch
split in ``world_size`` parts); accelerate's ``BatchSamplerShard`` then hands batch ``r`` of each step to
rank ``r``.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.training.pair_index import PairIndex

logger = logging.getLogger(__name__)

MONO = "mono"
CROSS = "cross"
LANGUAGE_SAMPLING = ("uniform", "proportional")


@dataclass(frozen=True)
class Step:
    """The kind of one optimizer step's batches: ``mono`` with its language, or ``cross``."""

    kind: str
    lang: str | None = None


class BatchShareMeter:
    """The realised mono / cross share over the optimizer steps actually trained.

    The sampler tells the meter which plan it follows; since a plan is a pure function of seed + epoch,
    the kinds of the first n steps are known exactly. Counting what the sampler emits instead would
    include the batches the data loader has prefetched ahead of training (and, on a resume, the batches
    it skips over).
    """

    def __init__(self) -> None:
        self.sampler: HybridBatchSampler | None = None
        self._plans: dict[int, list[Step]] = {}

    def attach(self, sampler: HybridBatchSampler) -> None:
        """Follow ``sampler``'s plans (the training sampler calls this when it is built)."""
        self.sampler = sampler
        self._plans.clear()

    def steps(self, done: int) -> list[Step]:
        """The kinds of the first ``done`` optimizer steps (one plan step each, from epoch 0 on)."""
        if self.sampler is None or done <= 0:
            return []
        out: list[Step] = []
        epoch = 0
        while len(out) < done:
            if epoch not in self._plans:
                self._plans[epoch] = self.sampler.plan(epoch)
            out.extend(self._plans[epoch][: done - len(out)])
            epoch += 1
        return out

    def shares(self, done: int) -> dict[str, float]:
        """``{"mono_share": .., "cross_share": ..}`` over the first ``done`` steps (empty before any)."""
        counts = Counter(step.kind for step in self.steps(done))
        total = sum(counts.values())
        if not total:
            return {}
        return {"mono_share": counts[MONO] / total, "cross_share": counts[CROSS] / total}


class _Stream:
    """Rows drawn in a seeded random order, filled greedily into duplicate-free batches.

    Rows that clash with the batch being filled are deferred and tried first for the next batch. With
    ``cycle`` the order is reshuffled when exhausted (training); without, the stream ends (validation).
    """

    def __init__(
        self,
        items: np.ndarray,
        rng: np.random.Generator,
        keys: Callable[[int], tuple[int, tuple[int, ...]]],
        cycle: bool,
        pick: Callable[[int], int] | None = None,
        name: str = "",
    ) -> None:
        self.items, self.rng, self.keys, self.cycle = items, rng, keys, cycle
        self.pick = pick or int
        self.name = name
        self.order = rng.permutation(items)
        self.position = 0
        self.new_pass = False
        self.deferred: deque[int] = deque()

    def _draw(self) -> int | None:
        if self.position == len(self.order):
            if not self.cycle:
                return None
            self.order, self.position = self.rng.permutation(self.items), 0
            self.new_pass = True
        item = self.order[self.position]
        self.position += 1
        return self.pick(int(item))

    def take(self, need: int) -> list[int]:
        """Up to ``need`` rows with distinct groups and texts (exactly ``need`` when cycling)."""
        rows: list[int] = []
        clashed: list[int] = []
        groups: set[int] = set()
        texts: set[int] = set()
        conflicts, limit = 0, 3 * len(self.items) + need
        while len(rows) < need:
            row = self.deferred.popleft() if self.deferred else self._draw()
            if row is None:
                break
            if self.new_pass:  # a new pass holds every row again: the clashed ones need no deferring
                clashed.clear()
                self.new_pass = False
            group, keys = self.keys(row)
            if group in groups or not texts.isdisjoint(keys):
                clashed.append(row)
                conflicts += 1
                if conflicts > limit:
                    raise DataError(
                        f"cannot fill a batch of {need} from {self.name} without repeating a group or a "
                        "text: the data has too few distinct pairs there; lower batch_size or deduplicate"
                    )
                continue
            groups.add(group)
            texts.update(keys)
            rows.append(row)
        self.deferred.extendleft(reversed(clashed))
        return rows


class HybridBatchSampler(DefaultBatchSampler):
    """Batch sampler over a :class:`PairIndex` dataset: hybrid mono / cross-lingual batches.

    Args:
        dataset: ``index.dataset`` (the sampler returns indices into it).
        batch_size: examples per batch (per device).
        drop_last: ignored; every batch is full.
        valid_label_columns / generator: part of the sentence-transformers contract; unused.
        seed: base seed; epoch ``e`` draws from ``seed + e``.
        index: the numbered examples and their languages, groups and texts.
        alpha: probability of a monolingual step; 1 = all mono, 0 = all cross-lingual.
        language_sampling: language of a mono step, ``uniform`` over languages or ``proportional`` to
            their number of pairs.
        world_size: processes sharing a step; each step emits this many disjoint batches.
        meter: optional meter of the realised batch share; it follows this sampler's plans.

    Raises:
        ValueError: bad arguments. DataError: too little data for the kinds alpha asks for.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool = False,
        valid_label_columns: list[str] | None = None,
        generator=None,
        seed: int = 0,
        *,
        index: PairIndex,
        alpha: float,
        language_sampling: str = "uniform",
        world_size: int = 1,
        meter: BatchShareMeter | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if language_sampling not in LANGUAGE_SAMPLING:
            raise ValueError(f"language_sampling must be one of {LANGUAGE_SAMPLING}: {language_sampling!r}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if seed is None or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if len(dataset) != index.n_rows:
            raise ValueError(f"dataset has {len(dataset)} rows but the index numbers {index.n_rows}")
        self.index = index
        self.alpha = float(alpha)
        self.world_size = world_size
        self.meter = meter
        if meter is not None:
            meter.attach(self)
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = max(1, index.n_pairs // self.global_batch)
        self.mono_languages, self.mono_weights = self._mono_languages(language_sampling)
        if alpha < 1.0 and index.n_cross_groups < self.global_batch:
            raise DataError(
                f"cross-lingual batches of {self.global_batch} need as many parallel groups (pairs sharing a "
                f"group_id in two languages); the data has {index.n_cross_groups}"
            )

    def _mono_languages(self, language_sampling: str) -> tuple[list[str], np.ndarray]:
        """Languages that can fill a monolingual batch, and their sampling weights."""
        if self.alpha == 0.0:
            return [], np.zeros(0)
        usable, sizes = [], []
        for lang, rows in self.index.mono_rows.items():
            distinct = min(
                len(np.unique(self.index.group[rows])),
                len(np.unique(self.index.query_text[rows])),
                len(np.unique(self.index.passage_text[rows])),
            )
            if distinct >= self.global_batch:
                usable.append(lang)
                sizes.append(len(rows))
            else:
                logger.warning(
                    "language %s has %d distinct pairs, fewer than a batch of %d: left out of mono batches",
                    lang,
                    distinct,
                    self.global_batch,
                )
        if not usable:
            raise DataError(f"no language has {self.global_batch} distinct pairs for a monolingual batch")
        weights = np.ones(len(usable)) if language_sampling == "uniform" else np.asarray(sizes, dtype=float)
        return usable, weights / weights.sum()

    def _seeds(self, epoch: int) -> list[np.random.SeedSequence]:
        """Independent seeds for the plan, the cross stream and each language stream of one epoch."""
        return np.random.SeedSequence(self.seed + epoch).spawn(2 + len(self.mono_languages))

    def plan(self, epoch: int | None = None) -> list[Step]:
        """The kind (and mono language) of every step of an epoch: a function of seed + epoch only."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng(self._seeds(epoch)[0])
        mono = rng.random(self.steps_per_epoch) < self.alpha  # (steps,)
        if not self.mono_languages:
            return [Step(CROSS) for _ in mono]
        langs = rng.choice(len(self.mono_languages), size=self.steps_per_epoch, p=self.mono_weights)
        names = self.mono_languages
        return [Step(MONO, names[lang]) if m else Step(CROSS) for m, lang in zip(mono, langs, strict=True)]

    def __len__(self) -> int:
        return self.steps_per_epoch * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        steps = self.plan(epoch)
        logger.info("epoch %d batches: %s (alpha %.2f)", epoch, describe_steps(steps), self.alpha)
        seeds = self._seeds(epoch)
        index = self.index
        offsets = index.cross_offsets
        cross_rng = np.random.default_rng(seeds[1])
        streams = {
            CROSS: _Stream(
                np.arange(index.n_cross_groups),
                cross_rng,
                index.keys,
                cycle=True,
                pick=lambda g: int(offsets[g] + cross_rng.integers(offsets[g + 1] - offsets[g])),
                name="the parallel groups",
            )
        }
        for lang, seed in zip(self.mono_languages, seeds[2:], strict=True):
            rng = np.random.default_rng(seed)
            name = f"language {lang}"
            streams[lang] = _Stream(index.mono_rows[lang], rng, index.keys, cycle=True, name=name)
        for step in steps:
            rows = streams[step.lang if step.kind == MONO else CROSS].take(self.global_batch)
            for rank in range(self.world_size):
                yield rows[rank * self.batch_size : (rank + 1) * self.batch_size]


class FixedBatchSampler(DefaultBatchSampler):
    """Yields a precomputed list of batches (validation); batch sizes may vary."""

    def __init__(self, dataset, batches: Sequence[list[int]], seed: int = 0) -> None:
        largest = max(map(len, batches), default=1)
        super().__init__(dataset, batch_size=max(1, largest), drop_last=False, seed=seed)
        self.batches = [list(b) for b in batches]
        self.batch_size = None  # varying sizes: accelerate shards such samplers batch by batch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(b) for b in self.batches)


def validation_batches(index: PairIndex, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Deterministic duplicate-free batches covering a held-out index once: per language, then cross.

    Every pair appears once in a monolingual batch of its language, and every parallel group once in a
    cross-lingual batch (one random combination of its languages).
    """
    rng = np.random.default_rng(seed)
    offsets = index.cross_offsets
    streams = [_Stream(rows, rng, index.keys, cycle=False) for rows in index.mono_rows.values()]
    streams.append(
        _Stream(
            np.arange(index.n_cross_groups),
            rng,
            index.keys,
            cycle=False,
            pick=lambda g: int(offsets[g] + rng.integers(offsets[g + 1] - offsets[g])),
        )
    )
    batches = []
    for stream in streams:
        while batch := stream.take(batch_size):
            batches.append(batch)
    return batches


def describe_steps(steps: Sequence[Step]) -> str:
    """``"mono 26 (52.0%: de 9, en 17), cross 24 (48.0%)"``."""
    total = max(1, len(steps))
    kinds = Counter(step.kind for step in steps)
    langs = Counter(step.lang for step in steps if step.kind == MONO)
    per_lang = ", ".join(f"{lang} {n}" for lang, n in sorted(langs.items()))
    mono = f"mono {kinds[MONO]} ({kinds[MONO] / total:.1%}{': ' + per_lang if per_lang else ''})"
    return f"{mono}, cross {kinds[CROSS]} ({kinds[CROSS] / total:.1%})"


class HybridSamplerFactory:
    """The ``batch_sampler`` callable for the trainer.

    The trainer calls it for each dataset it batches: the training index's dataset gets a
    :class:`HybridBatchSampler`, the validation index's dataset gets fixed :func:`validation_batches`.
    """

    def __init__(
        self,
        train: PairIndex,
        alpha: float,
        language_sampling: str = "uniform",
        world_size: int = 1,
        validation: PairIndex | None = None,
        meter: BatchShareMeter | None = None,
    ) -> None:
        self.train = train
        self.alpha = alpha
        self.language_sampling = language_sampling
        self.world_size = world_size
        self.validation = validation
        self.meter = meter

    def __getstate__(self) -> dict:
        """Pickle the settings only: the trainer saves its arguments, this factory included, with every
        checkpoint, and the data would be copied into each (an unpickled factory samples nothing)."""
        return {**self.__dict__, "train": None, "validation": None, "meter": None}

    def __call__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool = False,
        valid_label_columns: list[str] | None = None,
        generator=None,
        seed: int = 0,
    ) -> DefaultBatchSampler:
        if dataset is self.train.dataset:
            return HybridBatchSampler(
                dataset,
                batch_size,
                drop_last,
                valid_label_columns,
                generator,
                seed,
                index=self.train,
                alpha=self.alpha,
                language_sampling=self.language_sampling,
                world_size=self.world_size,
                meter=self.meter,
            )
        if self.validation is not None and dataset is self.validation.dataset:
            return FixedBatchSampler(dataset, validation_batches(self.validation, batch_size, seed), seed)
        raise ValueError("HybridSamplerFactory got a dataset that is neither its training nor validation set")


__all__ = [
    "BatchShareMeter",
    "FixedBatchSampler",
    "HybridBatchSampler",
    "HybridSamplerFactory",
    "Step",
    "describe_steps",
    "validation_batches",
]
