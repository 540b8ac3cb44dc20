"""In-batch negatives gathered across devices: two gloo processes, each with half a batch, give the loss and
(DDP-averaged) gradients of one process with the whole batch, for every loss ``build_loss`` makes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hybrid_qdrant.training.config import LossSection

PAIRS = Path(__file__).parent / "fixtures" / "training" / "pairs.jsonl"
WORLD = 2
BATCH = 8  # global batch: 4 examples per process
TIMEOUT_S = 120
VARIANTS = {
    "plain": LossSection(),
    "symmetric": LossSection(symmetric=True),
    "cached": LossSection(cached=True, mini_batch_size=2),
}


def columns() -> list[list[str]]:
    """(query, passage, negative) columns of the first BATCH fixture pairs (no text twice)."""
    records = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()][:BATCH]
    return [[r[key] for r in records] for key in ("query", "passage", "negative")]


def loss_and_gradients(model, config: LossSection, texts: list[list[str]], distributed: bool):
    """One forward and backward of the configured loss; (loss, {parameter: gradient})."""
    from hybrid_qdrant.training.loss import build_loss

    model.zero_grad(set_to_none=True)
    loss_fn = build_loss(model, config, distributed=distributed)
    features = [model.preprocess(column) for column in texts]
    loss = loss_fn(features, None)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def worker(rank: int, init_file: str, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = SentenceTransformer(model_dir, device="cpu").eval()  # eval: no dropout
        half = BATCH // WORLD
        mine = [column[rank * half : (rank + 1) * half] for column in columns()]
        for name, config in VARIANTS.items():
            for gather in (True, False):
                section = LossSection(**{**config.__dict__, "gather_across_devices": gather})
                loss, grads = loss_and_gradients(model, section, mine, distributed=True)
                dist.all_reduce(loss)  # the mean of the ranks' losses, as logged
                loss /= WORLD
                for grad in grads.values():  # what DDP does to gradients
                    dist.all_reduce(grad)
                    grad /= WORLD
                if rank == 0:
                    torch.save({"loss": loss, "grads": grads}, Path(out_dir) / f"{name}-{gather}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory) -> str:
    from hybrid_qdrant.training.tiny_decoder import build_tiny_decoder

    texts = [t for column in columns() for t in column]
    return build_tiny_decoder(tmp_path_factory.mktemp("models") / "decoder", texts, hidden=16, seed=1)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, tiny_decoder) -> Path:
    out = tmp_path_factory.mktemp("gather")
    args = (str(out / "rendezvous"), tiny_decoder, str(out))
    # fork, not spawn: the children need no fresh imports (4 s rather than 20); they run one thread, so
    # no OpenMP pool crosses the fork
    context = mp.start_processes(worker, args=args, nprocs=WORLD, join=False, start_method="fork")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} gloo processes did not finish in {TIMEOUT_S} s")
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gathered_halves_equal_one_large_batch(two_processes, tiny_decoder, name):
    from sentence_transformers import SentenceTransformer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = SentenceTransformer(tiny_decoder, device="cpu").eval()
        full_loss, full_grads = loss_and_gradients(model, VARIANTS[name], columns(), distributed=False)
    finally:
        torch.set_num_threads(threads)
    gathered = torch.load(two_processes / f"{name}-True.pt")
    torch.testing.assert_close(gathered["loss"], full_loss, rtol=1e-5, atol=1e-6)
    assert gathered["grads"].keys() == full_grads.keys() and full_grads
    for key, grad in full_grads.items():
        torch.testing.assert_close(gathered["grads"][key], grad, rtol=1e-4, atol=1e-6, msg=key)

    local = torch.load(two_processes / f"{name}-False.pt")  # without gathering: fewer negatives per query
    assert local["loss"] < full_loss - 1e-3
