"""Encoding in fixed batches, in this process or in worker processes (``[encoder] workers``, ``--workers``).

Every call's texts are sorted by length (stable, longest first) and cut into ``batch_size`` batches, and
each batch is one forward pass: in this process (one worker), or in whichever worker process is free
(several: one per GPU, or CPU processes). A text's vector depends, in its last bits, on the batch it
was encoded in (the padding, the kernels' shapes), and sentence-transformers re-sorts each call with an
unstable sort, so which batch a text landed in depended on how a call was cut up. Fixing the batches
here makes the vectors the same however many workers encode them and however the embedding cache cuts
a block into chunks (its chunks start at multiples of ``batch_size`` of the same order): two workers
write exactly the collection one writes.

The workers are spawned processes that load the model from the encoder's settings (the fingerprint is
checked against this process's), each on its own device: ``cuda:i`` round-robin over the visible GPUs,
or the CPU with ``threads / workers`` threads each. They start on the first call that has something to
encode (a complete collection starts none), ignore Ctrl-C (this process handles it and stops them),
exit when this process dies (SIGKILL included), and a worker that dies is an error naming it, never a
hang. sentence-transformers' pool (``start_multi_process_pool``) is the model; its worker loop is not
used because it does none of these: its workers outlive a killed parent (blocked on their queue), take
every core each, print a traceback each on Ctrl-C, and receive the model pickled (no ONNX / OpenVINO).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hybrid_qdrant.errors import HQError, ModelError

logger = logging.getLogger(__name__)

#: Seconds between checks that the workers (in this process) or this process (in a worker) are alive.
ALIVE_CHECK_SECONDS = 1.0
#: Seconds a worker may take to finish its batch when the pool is stopped, before it is terminated.
STOP_SECONDS = 5.0
#: What to do after a failure, ending the one-line errors.
RESUME_HINT = "what was written so far is kept: run the command again to resume"


def plan_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """The positions of ``texts`` in each forward pass: sorted by length, longest first (a stable sort,
    so equal lengths keep their order), cut into ``batch_size`` slices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def worker_devices(device: str | None, workers: int) -> list[str | None]:
    """The device of each worker: ``cuda:i`` round-robin over the visible GPUs for ``device`` None or
    ``cuda`` when CUDA is available; otherwise ``device`` for every worker (None: the best available)."""
    if device in (None, "cuda"):
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return [f"cuda:{i % count}" for i in range(workers)]
    return [device] * workers


class PoolEncoder:
    """An ``Encoder`` that encodes each call in fixed batches (see ``plan_batches``), in this process
    (``workers=1``) or in ``workers`` worker processes.

    Args:
        encoder: the encoder of this process (``SentenceTransformerEncoder``, or a ``LazyEncoder`` that
            loads its model on first use); with several workers only its dim and fingerprint are used
            (each worker loads its own copy of the model) and it is not kept.
        workers: processes that encode (1: this one).
        settings: how the workers load the model (default: the encoder's); their devices follow its
            ``device`` (``worker_devices``).
        devices: one device per worker instead.
        threads: torch threads per CPU worker (default: this process's threads / workers, at least 1).

    Nothing here imports torch until a pool starts (a cached run loads no model).
    """

    def __init__(
        self,
        encoder,
        workers: int = 1,
        settings: Any = None,
        devices: Sequence[str | None] | None = None,
        threads: int | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if devices is not None and len(devices) != workers:
            raise ValueError(f"{workers} workers need {workers} devices, got {list(devices)}")
        self.settings = settings or encoder.settings
        self.dim = encoder.dim
        self.fingerprint = encoder.fingerprint
        self.max_seq_length = getattr(encoder, "max_seq_length", None) or self.settings.max_seq_length
        self.batch_size = self.settings.batch_size
        self.workers = workers
        self.devices = list(devices) if devices is not None else None
        self.threads = threads
        self._here = encoder if workers == 1 else None  # several: the workers hold the model
        self._pool: _Pool | None = None

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (empty until the pool starts, and with one worker)."""
        return [p.pid for p in self._pool.processes] if self._pool else []

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("query", texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("passage", texts)

    def _encode(self, role: str, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        if not texts:
            return out
        batches = plan_batches(texts, self.batch_size)
        inputs = [[texts[i] for i in batch] for batch in batches]
        if self._here is not None:
            encode = self._here.encode_queries if role == "query" else self._here.encode_passages
            parts = [encode(batch) for batch in inputs]
        else:
            if self._pool is None:
                self._pool = self._start()
            try:
                parts = self._pool.run(role, inputs)
            except BaseException:  # a dead worker, Ctrl-C: the pool is not used again
                self.close()
                raise
        for batch, part in zip(batches, parts, strict=True):
            out[batch] = part  # (len(batch), dim)
        return out

    def _start(self) -> _Pool:
        import torch

        devices = self.devices or worker_devices(self.settings.device, self.workers)
        threads = self.threads or max(1, torch.get_num_threads() // self.workers)
        return _Pool(self.settings, self.fingerprint, devices, threads)

    def close(self) -> None:
        """Stop the workers (a later call starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()


def close_encoder(encoder: Any) -> None:
    """Close an encoder that has something to close (a ``PoolEncoder``'s workers, through a
    ``CachedEncoder``); others are left as they are."""
    close = getattr(encoder, "close", None)
    if callable(close):
        close()


# --------------------------------------------------------------------------------------------- the pool


class _Pool:
    """Worker processes with one queue of batches in and one of vectors out."""

    def __init__(self, settings: Any, fingerprint: str, devices: Sequence[str | None], threads: int) -> None:
        import torch.multiprocessing as mp

        context = mp.get_context("spawn")  # CUDA and OpenMP do not survive a fork
        self.fingerprint = fingerprint
        self.devices = list(devices)
        self.inbox = context.Queue()
        self.outbox = context.Queue()
        self.ready: set[int] = set()
        self.next_job = 0
        self.processes = []
        settings = replace(settings, workers=1)
        with _sigint_ignored():  # the children start with Ctrl-C ignored, before Python runs any code
            for number, device in enumerate(self.devices):
                process = context.Process(
                    target=_serve,
                    args=(number, settings, device, threads, self.inbox, self.outbox),
                    name=f"hq-encode-{number}",
                    daemon=True,
                )
                process.start()
                self.processes.append(process)
        logger.info(
            "started %d encoding workers on %s (%d CPU thread%s each)",
            len(self.processes),
            ", ".join(str(d or "auto") for d in self.devices),
            threads,
            "" if threads == 1 else "s",
        )

    def run(self, role: str, batches: list[list[str]]) -> list[np.ndarray]:
        """Encode each batch in one forward pass on some worker; the vectors in the batches' order."""
        self._check_alive()  # a worker that died between calls would never take its share
        first = self.next_job
        self.next_job += len(batches)
        for job, batch in enumerate(batches, first):
            self.inbox.put((job, role, batch))
        done: dict[int, np.ndarray] = {}
        checked = time.monotonic()
        while len(done) < len(batches):
            if time.monotonic() - checked > ALIVE_CHECK_SECONDS:
                self._check_alive()
                checked = time.monotonic()
            try:
                kind, key, value = self.outbox.get(timeout=ALIVE_CHECK_SECONDS)
            except queue.Empty:
                continue
            if kind == "ready":
                self._check_ready(key, value)
            elif kind == "failed":
                raise HQError(f"encoding worker {self._name(key)} could not start: {value}")
            elif kind == "error":
                raise HQError(f"an encoding worker failed: {value}; {RESUME_HINT}")
            elif first <= key < self.next_job:
                done[key] = value
        return [done[job] for job in range(first, self.next_job)]

    def _check_ready(self, number: int, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise ModelError(
                f"encoding worker {self._name(number)} loaded another model than this process (fingerprint "
                f"{fingerprint} != {self.fingerprint}): did the model folder change?"
            )
        self.ready.add(number)

    def _check_alive(self) -> None:
        for number, process in enumerate(self.processes):
            if not process.is_alive():
                code = process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                raise HQError(f"encoding worker {self._name(number)} died ({how}); {RESUME_HINT}")

    def _name(self, number: int) -> str:
        process = self.processes[number] if number < len(self.processes) else None
        pid = f", pid {process.pid}" if process is not None else ""
        return f"{number + 1} of {len(self.devices)} ({self.devices[number] or 'auto'}{pid})"

    def stop(self) -> None:
        """Ask every worker to finish, wait a little, terminate the rest."""
        for _ in self.processes:
            with contextlib.suppress(Exception):
                self.inbox.put(None)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()  # batches nobody will take: never block this process's exit on them
            q.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while inside (main thread only): a process spawned meanwhile inherits it, and
    Python keeps an ignored SIGINT ignored, so Ctrl-C never reaches a worker's code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _serve(number: int, settings: Any, device: str | None, threads: int, inbox, outbox) -> None:
    """A worker: load the model, then encode batches until told to stop or this pool's process dies."""
    import multiprocessing

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    try:
        import torch

        torch.set_num_threads(threads)
        from hybrid_qdrant.encoding.encoder import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(replace(settings, device=device))
    except BaseException as exc:  # reported as one line by the pool's process
        outbox.put(("failed", number, f"{type(exc).__name__}: {exc}".splitlines()[0]))
        return
    outbox.put(("ready", number, encoder.fingerprint))
    while True:
        try:
            task = inbox.get(timeout=ALIVE_CHECK_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                outbox.cancel_join_thread()  # nobody reads it any more
                return
            continue
        if task is None:
            return
        job, role, texts = task
        try:
            encode = encoder.encode_queries if role == "query" else encoder.encode_passages
            outbox.put(("done", job, encode(texts)))
        except Exception as exc:
            outbox.put(("error", job, f"{type(exc).__name__}: {exc}".splitlines()[0]))


__all__ = ["PoolEncoder", "close_encoder", "plan_batches", "worker_devices"]
