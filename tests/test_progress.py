"""What a job reports while it runs: one phase per role however many encoding calls it takes, and one
line saying what the embedding cache reused."""

from __future__ import annotations

from hybrid_qdrant.encoding.cache import EncodeProgress
from hybrid_qdrant.evaluation.jobs import JobProgress


class Recorder(JobProgress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, phase, total):
        self.calls.append(("start", phase, total))

    def grow(self, phase, n):
        self.calls.append(("grow", phase, n))

    def advance(self, phase, n=1):
        self.calls.append(("advance", phase, n))

    def note(self, message):
        self.calls.append(("note", message))


def test_blocks_of_passages_are_one_phase_and_one_note():
    rec = Recorder()
    # two blocks of passages: the first fully cached, the second with 3 to encode in chunks of 2 and 1
    rec.encoded(EncodeProgress("passage", 4, 4, 0))
    rec.encoded(EncodeProgress("passage", 5, 2, 0))
    rec.encoded(EncodeProgress("passage", 5, 2, 2))
    rec.encoded(EncodeProgress("passage", 5, 2, 3))
    rec.settle("passage")
    rec.encoded(EncodeProgress("query", 7, 7, 0))
    rec.settle("query")
    assert rec.calls == [
        ("start", "encode passages", 0),
        ("grow", "encode passages", 3),
        ("advance", "encode passages", 2),
        ("advance", "encode passages", 1),
        ("note", "6 of 9 passages reused from the embedding cache (3 encoded)"),
        ("start", "encode queries", 0),
        ("note", "7 of 7 queries reused from the embedding cache (0 encoded)"),
    ]


def test_nothing_reused_says_nothing_and_a_new_phase_starts_afresh():
    rec = Recorder()
    rec.encoded(EncodeProgress("query", 2, 0, 0))
    rec.encoded(EncodeProgress("query", 2, 0, 2))
    rec.settle("query")
    rec.encoded(EncodeProgress("query", 1, 1, 0))
    rec.settle("query")
    assert rec.calls == [
        ("start", "encode queries", 2),
        ("advance", "encode queries", 2),
        ("start", "encode queries", 0),
        ("note", "1 of 1 queries reused from the embedding cache (0 encoded)"),
    ]
