"""The hybrid batch sampler: homogeneous batches, alpha, determinism, duplicates, length, DDP split.

The data are dummy pairs with tell-tale texts (``q|de|g17``, ``p|en|g17``, ``n|en|g17``), so every batch
is checked on the texts the trainer would see, resolved through the dataset.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

from hybrid_qdrant.errors import DataError
from hybrid_qdrant.training.pair_index import PairIndex
from hybrid_qdrant.training.sampler import (
    CROSS,
    MONO,
    BatchShareMeter,
    FixedBatchSampler,
    HybridBatchSampler,
    HybridSamplerFactory,
    validation_batches,
)
from hybrid_qdrant.types import Pair

LANGS = ("de", "en", "es", "fr")


def dummy_pairs(groups: int = 120, solo: int = 10) -> list[Pair]:
    """Parallel groups in up to four languages (some missing), plus English pairs without a group."""
    pairs = []
    for g in range(groups):
        for i, lang in enumerate(LANGS):
            if (g + i) % 5 == 0:  # every group misses one or two languages now and then
                continue
            pairs.append(Pair(f"q|{lang}|g{g}", f"p|{lang}|g{g}", lang, f"g{g}", f"n|{lang}|g{g}"))
    pairs += [Pair(f"q|en|s{i}", f"p|en|s{i}", "en", None, f"n|en|s{i}") for i in range(solo)]
    return pairs


@pytest.fixture(scope="module")
def index() -> PairIndex:
    return PairIndex(dummy_pairs())


def make(
    index: PairIndex, alpha: float = 0.5, batch_size: int = 8, seed: int = 3, **kwargs
) -> HybridBatchSampler:
    return HybridBatchSampler(index.dataset, batch_size, seed=seed, index=index, alpha=alpha, **kwargs)


def parse(texts: list[str]) -> list[tuple[str, str]]:
    """``["q|de|g1", ...]`` -> ``[("de", "g1"), ...]``."""
    return [tuple(t.split("|")[1:]) for t in texts]


def resolve(index: PairIndex, batch: list[int]) -> dict[str, list[str]]:
    rows = index.dataset[batch]  # the columns the collator receives
    assert list(rows) == ["query", "passage", "negative"]
    return rows


def kind_of(index: PairIndex, batch: list[int]) -> tuple[str, str | None]:
    """The batch's kind from its texts; fails unless the batch is homogeneous."""
    rows = resolve(index, batch)
    queries, passages, negatives = parse(rows["query"]), parse(rows["passage"]), parse(rows["negative"])
    assert all(p == n for p, n in zip(passages, negatives, strict=True))  # the passage's own negative
    assert all(q[1] == p[1] for q, p in zip(queries, passages, strict=True))  # same group
    if all(q[0] == p[0] for q, p in zip(queries, passages, strict=True)):
        langs = {q[0] for q in queries}
        assert len(langs) == 1, f"monolingual batch mixes languages {langs}"
        return MONO, langs.pop()
    assert all(q[0] != p[0] for q, p in zip(queries, passages, strict=True)), "batch mixes mono and cross"
    return CROSS, None


def assert_no_duplicates(index: PairIndex, batch: list[int]) -> None:
    rows = resolve(index, batch)
    texts = rows["query"] + rows["passage"] + rows["negative"]
    assert len(set(texts)) == len(texts)
    groups = [g for _, g in parse(rows["query"])]
    assert len(set(groups)) == len(groups)


def test_every_batch_is_homogeneous_and_duplicate_free(index):
    sampler = make(index, alpha=0.5)
    batches = list(sampler)
    kinds = [kind_of(index, b) for b in batches]
    for batch in batches:
        assert len(batch) == 8
        assert_no_duplicates(index, batch)
    assert {k for k, _ in kinds} == {MONO, CROSS}
    assert kinds == [(s.kind, s.lang) for s in sampler.plan()]


def test_groupless_pairs_only_in_monolingual_batches(index):
    sampler = make(index, alpha=0.5)
    solo_rows = set(range(index.n_pairs - 10, index.n_pairs))
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            if solo_rows & set(batch):
                assert kind_of(index, batch) == (MONO, "en")


def test_realised_cross_share_is_close_to_one_minus_alpha(index):
    sampler = make(index, alpha=0.3, batch_size=4)
    steps = [step for epoch in range(30) for step in sampler.plan(epoch)]
    cross = sum(step.kind == CROSS for step in steps) / len(steps)
    assert len(steps) > 2500
    assert abs(cross - 0.7) < 5 * np.sqrt(0.21 / len(steps))  # 5 binomial standard deviations


def test_the_meter_counts_the_steps_trained_not_the_batches_emitted(index):
    meter = BatchShareMeter()
    sampler = make(index, alpha=0.3, batch_size=4, meter=meter)
    batches = list(sampler)  # epoch 0
    assert meter.shares(len(batches))["cross_share"] == sum(
        kind_of(index, b)[0] == CROSS for b in batches
    ) / len(batches)
    # a data loader runs ahead of training: after 5 steps only 5 batches count, whatever it prefetched
    iterator = iter(sampler)
    first = [next(iterator) for _ in range(7)]
    assert meter.shares(5)["cross_share"] == sum(kind_of(index, b)[0] == CROSS for b in first[:5]) / 5
    # steps beyond one epoch follow the next epoch's plan
    steps = meter.steps(len(batches) + 3)
    assert steps == sampler.plan(0) + sampler.plan(1)[:3]
    assert BatchShareMeter().shares(10) == {} and meter.shares(0) == {}


@pytest.mark.parametrize(("alpha", "kind"), [(1.0, MONO), (0.0, CROSS)])
def test_alpha_one_and_zero_are_exact(index, alpha, kind):
    sampler = make(index, alpha=alpha)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert {kind_of(index, b)[0] for b in sampler} == {kind}


def test_uniform_and_proportional_language_choice():
    pairs = [Pair(f"q|en|g{g}", f"p|en|g{g}", "en", f"g{g}") for g in range(300)]
    pairs += [Pair(f"q|de|g{g}", f"p|de|g{g}", "de", f"g{g}") for g in range(100)]
    index = PairIndex(pairs)
    uniform = [s.lang for e in range(20) for s in make(index, alpha=1.0, batch_size=4).plan(e)]
    proportional = [
        s.lang
        for e in range(20)
        for s in make(index, alpha=1.0, batch_size=4, language_sampling="proportional").plan(e)
    ]
    assert abs(uniform.count("en") / len(uniform) - 0.5) < 0.05
    assert abs(proportional.count("en") / len(proportional) - 0.75) < 0.05


def test_deterministic_by_seed_and_epoch_restartable(index):
    first, second, other = make(index, seed=3), make(index, seed=3), make(index, seed=4)
    epoch0 = list(first)
    assert list(second) == epoch0
    assert list(other) != epoch0
    first.set_epoch(1)
    epoch1 = list(first)
    assert epoch1 != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0  # no state carried between epochs
    assert list(first) == epoch0  # nor between two passes over one epoch


def test_len_is_exact(index):
    for alpha, batch_size, world in [(0.5, 8, 1), (0.0, 7, 1), (1.0, 16, 2), (0.5, 5, 3)]:
        sampler = make(index, alpha=alpha, batch_size=batch_size, world_size=world)
        assert len(list(sampler)) == len(sampler) == world * (index.n_pairs // (batch_size * world))


def test_ddp_ranks_share_the_kind_per_step_and_get_disjoint_batches(index):
    sampler = make(index, alpha=0.5, batch_size=6, world_size=2)
    shards = [
        BatchSamplerShard(sampler, num_processes=2, process_index=rank, even_batches=False) for rank in (0, 1)
    ]
    rank0, rank1 = (list(shard) for shard in shards)
    assert len(rank0) == len(rank1) == len(sampler) // 2 == len(shards[0])
    for step, (a, b) in enumerate(zip(rank0, rank1, strict=True)):
        assert (
            kind_of(index, a) == kind_of(index, b) == (sampler.plan()[step].kind, sampler.plan()[step].lang)
        )
        assert_no_duplicates(index, a + b)  # one global batch: no false negatives across devices either


def test_too_little_data_for_a_batch_kind():
    pairs = [Pair(f"q{g}{lang}", f"p{g}{lang}", lang, f"g{g}") for g in range(3) for lang in ("en", "de")]
    pairs += [Pair(f"s{i}", f"t{i}", "en") for i in range(10)]
    index = PairIndex(pairs)
    with pytest.raises(DataError, match="need as many parallel groups"):
        make(index, alpha=0.5, batch_size=4)
    assert make(index, alpha=1.0, batch_size=4).mono_languages == ["en"]  # de is too small for a batch
    with pytest.raises(DataError, match="no language has 20 distinct pairs"):
        make(index, alpha=1.0, batch_size=20)


def test_duplicate_texts_that_cannot_be_avoided_raise():
    pairs = [Pair(f"q{i}", "the same passage", "en", f"g{i}") for i in range(40)]
    pairs += [Pair("x", "y", "en", "gx")]
    index = PairIndex(pairs)
    assert all(len(b) == 2 for b in make(index, alpha=1.0, batch_size=2))  # two distinct passages fit
    with pytest.raises(DataError, match="no language has 4 distinct pairs"):
        make(index, alpha=1.0, batch_size=4)
    # every two pairs clash through a negative that is the other's passage: no batch of 2 exists
    ring = [Pair("qa", "a", "en", "A", "b"), Pair("qb", "b", "en", "B", "c"), Pair("qc", "c", "en", "C", "a")]
    with pytest.raises(DataError, match="cannot fill a batch of 2 from language en"):
        list(make(PairIndex(ring), alpha=1.0, batch_size=2))


def test_bad_arguments(index):
    with pytest.raises(ValueError, match="alpha"):
        make(index, alpha=1.5)
    with pytest.raises(ValueError, match="language_sampling"):
        make(index, language_sampling="zipf")
    with pytest.raises(ValueError, match="rows"):
        HybridBatchSampler(PairIndex(dummy_pairs(30)).dataset, 4, index=index, alpha=0.5)


def test_validation_batches_cover_each_pair_and_group_once(index):
    batches = validation_batches(index, 16, seed=0)
    mono = [row for b in batches for row in b if row < index.n_pairs]
    cross = [row for b in batches for row in b if row >= index.n_pairs]
    assert sorted(mono) == list(range(index.n_pairs))
    groups = np.searchsorted(index.cross_offsets, cross, side="right") - 1
    assert sorted(groups.tolist()) == list(range(index.n_cross_groups))
    for batch in batches:
        kind_of(index, batch)
        assert_no_duplicates(index, batch)
    assert validation_batches(index, 16, seed=0) == batches


def test_factory_dispatches_by_dataset_and_pickles_light(index):
    validation = PairIndex(dummy_pairs(12, solo=0))
    factory = HybridSamplerFactory(index, alpha=0.5, validation=validation, meter=BatchShareMeter())
    assert isinstance(factory(index.dataset, 8, False, seed=1), HybridBatchSampler)
    fixed = factory(validation.dataset, 8, False, seed=1)
    assert isinstance(fixed, FixedBatchSampler)
    assert len(list(fixed)) == len(fixed)
    with pytest.raises(ValueError, match="neither"):
        factory(PairIndex(dummy_pairs(12)).dataset, 8, False)
    assert len(pickle.dumps(factory)) < 1000  # the trainer pickles its arguments into every checkpoint
