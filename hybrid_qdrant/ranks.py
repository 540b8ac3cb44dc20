"""Which process of a distributed launch (``torchrun`` / ``accelerate launch``) this is."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in the launch (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def main_process() -> bool:
    """True outside a distributed launch, and in its rank-0 process (the one that prints and writes)."""
    return os.environ.get("RANK", "0") == "0"


def wait_for_everyone() -> None:
    """A barrier across the processes of a distributed launch (a no-op in one process)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
