"""The processes of a ``torchrun`` / ``accelerate launch`` that share one ingestion.

Under a launch of W processes, ``hq ingest`` (and the ingestion of ``hq evaluate``) splits the passages
by block: block k of the stream (``block_size`` passages in stream order, after the checks) belongs to
process k mod W, whatever the machine or the timing. Every process reads and checks the whole stream, so
every one stops at the same bad record and counts the same passages per language, and encodes its own
blocks only:

- into a Qdrant server, each process writes its blocks itself (idempotent upserts: point ids are derived
  from doc ids); process 0 waits for all of them before it reports, switches an alias or evaluates;
- into the embedded store, which one process may open, process 0 is the one writer: per round of W
  blocks it checks which passages are missing, tells each process which of its block's passages to
  encode, gathers their vectors and writes them. The other processes never open the store.

The processes talk through a gloo group of ``torch.distributed`` (CPU, beside any NCCL group), set up
from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hybrid_qdrant.errors import ConfigError, HQError

#: How long a process waits for the others in one exchange. Process 0 of a server ingestion waits for
#: the slowest process's whole share at the end, so this is long; a process that dies is noticed at once
#: (its connections close) and the launcher stops the others.
EXCHANGE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class Launch:
    """This process's place in a distributed launch (one process: rank 0 of 1, and nothing to set up).

    Attributes:
        rank: this process (0 is the one that reports, and the writer of an embedded store).
        world: processes in the launch.
        local_rank: this process on its machine (picks its GPU).
        init_method: how the processes meet (default ``env://``: the launcher's ``MASTER_ADDR`` and
            ``MASTER_PORT``; ``file:///path`` for processes started otherwise).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    init_method: str | None = None
    _group: Any = field(default=None, repr=False)
    _owns_group: bool = field(default=False, repr=False)
    _open: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls) -> Launch:
        """The launch ``torchrun`` / ``accelerate launch`` describe in the environment (else one process)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc})") from exc
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ConfigError(f"RANK={rank} does not fit WORLD_SIZE={world}")
        return cls(rank=rank, world=world, local_rank=local)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """The process that reports (and writes to an embedded store)."""
        return self.rank == 0

    def owner(self, block: int) -> int:
        """The process that encodes block ``block`` of the stream."""
        return block % self.world

    def device(self, device: str | None) -> str | None:
        """This process's device: its own GPU (``cuda:{local_rank}``) for None or ``cuda`` under a launch
        with CUDA, otherwise ``device``."""
        if not self.distributed or device not in (None, "cuda"):
            return device
        import torch

        if not torch.cuda.is_available():
            return device
        return f"cuda:{self.local_rank % torch.cuda.device_count()}"

    # ----------------------------------------------------------------- the group

    @contextlib.contextmanager
    def opened(self) -> Iterator[Launch]:
        """Join the launch's gloo group while inside (nothing to do for one process)."""
        if not self.distributed or self._open:
            yield self
            return
        import torch.distributed as dist

        try:
            if dist.is_initialized():  # set up by the caller (e.g. accelerate): a gloo group beside it
                self._group = dist.new_group(backend="gloo", timeout=EXCHANGE_TIMEOUT)
            else:
                dist.init_process_group(
                    "gloo",
                    init_method=self.init_method,
                    rank=self.rank,
                    world_size=self.world,
                    timeout=EXCHANGE_TIMEOUT,
                )
                self._owns_group = True
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"process {self.rank} of {self.world} cannot join the launch ({exc}); start it with torchrun "
                "or accelerate launch, which set MASTER_ADDR and MASTER_PORT".splitlines()[0]
            ) from exc
        self._open = True
        try:
            yield self
        finally:
            self._open = False
            if self._owns_group:
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()
                self._owns_group = False
            self._group = None

    def broadcast(self, value: Any = None) -> Any:
        """Process 0's ``value``, in every process."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        with self._exchange("broadcast"):
            dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` in process 0 (by rank); None in the others."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.main else None
        with self._exchange("gather"):
            dist.gather_object(value, out, dst=0, group=self._group)
        return out

    @contextlib.contextmanager
    def _exchange(self, what: str) -> Iterator[None]:
        if not self._open:
            raise RuntimeError("Launch.opened() first")
        try:
            yield
        except RuntimeError as exc:  # a peer died or the exchange timed out: one line, not gloo's trace
            gist = _first_sentence(exc)
            raise HQError(
                f"process {self.rank} of {self.world} lost the others during a {what} ({gist}): another "
                "process failed (see its error); what was written so far is kept: run the launch again to "
                "resume"
            ) from exc


def _first_sentence(exc: BaseException) -> str:
    """The gist of a gloo error: its first sentence, without the ``[file.cc:line]`` it starts with."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0].rstrip(".")


__all__ = ["EXCHANGE_TIMEOUT", "Launch"]
