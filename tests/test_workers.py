"""Encoding that scales out: ``--workers`` (worker processes) and a torchrun launch (blocks shared out by
rank) each write exactly the collection one process writes; a killed worker leaves a resumable state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp
from mock_encoder import KeywordEncoder
from typer.testing import CliRunner

from hybrid_qdrant.benchmarks.beir import write_beir
from hybrid_qdrant.cli import app
from hybrid_qdrant.encoding.cache import CachedEncoder
from hybrid_qdrant.encoding.encoder import EncoderSettings
from hybrid_qdrant.encoding.pool import PoolEncoder, plan_batches
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.evaluation.ingest import ingest, merge_stats
from hybrid_qdrant.evaluation.launch import Launch
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.array import ArrayStore
from hybrid_qdrant.types import Benchmark, Passage, Query

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
WORDS = ["cat", "dog", "bird", "runs", "sits", "flies", "katze", "hund", "vogel", "rennt", "the", "a"]
runner = CliRunner()


def corpus(n: int, langs=("en", "de", "es")) -> list[Passage]:
    """``n`` passages per language of 1-24 words: many share a length, so batches cut through ties."""
    rng = np.random.default_rng(7)
    return [
        Passage(f"{lang}/{i}", " ".join(rng.choice(WORDS, int(rng.integers(1, 25)))), lang, f"g{i}")
        for lang in langs
        for i in range(n)
    ]


def benchmark_folder(path: Path, n: int) -> Path:
    """A BEIR folder (with ``lang``) of ``corpus(n)`` and one query per language."""
    passages = corpus(n)
    queries = [Query(f"{lang}/q", "the cat runs", lang, "q") for lang in ("en", "de", "es")]
    qrels = {q.query_id: {f"{lang}/0": 1 for lang in ("en", "de", "es")} for q in queries}
    bench = Benchmark("synthetic", ("en", "de", "es"), passages, queries, qrels, parallel=True)
    return write_beir(bench, path)


def points(location: str | Path, collection: str | None = None) -> dict[str, tuple[dict, bytes]]:
    """Every point of a collection (the only one at ``location`` by default): payload and vector bytes."""
    with open_store(location=str(location), collection=collection or "hq-check") as store:
        if collection is not None:
            return {r.doc_id: (r.payload, r.vector.tobytes()) for r in store.iter_records()}
        (collection,) = store.collections()
        with store.for_collection(collection) as one:  # closed: a forked process inherits open stores
            return {r.doc_id: (r.payload, r.vector.tobytes()) for r in one.iter_records()}


def server_points(url: str, collection: str) -> dict[str, tuple[dict, bytes]]:
    with open_store(url=url, collection=collection, allow_insecure_key=True) as store:
        return {r.doc_id: (r.payload, r.vector.tobytes()) for r in store.iter_records()}


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread in this process, as in each CPU worker of these tests: on CPUs a vector's last
    bits can depend on the thread count (how a kernel splits its sums), so the reference process and
    the workers it is compared with must run the same number of threads (see ``encoding.pool``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from tiny_model import build_tiny_st_model

    texts = [p.text for p in corpus(5)] + ["the cat runs"]
    return build_tiny_st_model(tmp_path_factory.mktemp("models") / "tiny", texts)


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    return benchmark_folder(tmp_path_factory.mktemp("data") / "beir", 120)


def hq_ingest(folder: Path, model: str, where: Path, *extra: str):
    args = ["ingest", "--benchmark", "beir", "--data-dir", str(folder), "--model", model, "--batch-size", "4"]
    args += ["--location", str(where / "qdrant"), "--cache-dir", str(where / "cache"), *extra]
    return runner.invoke(app, args)


# ------------------------------------------------------------------------------------------- batches


class Recording:
    """Records the batches it is given; vectors from a hash of the text."""

    dim = 4
    fingerprint = '{"model": "recording"}'
    settings = EncoderSettings(model="recording", batch_size=3)

    def __init__(self) -> None:
        self.batches: list[tuple[str, ...]] = []

    def encode_passages(self, texts):
        self.batches.append(tuple(texts))
        return np.asarray([[hash(t) % 97, len(t), 1, 2] for t in texts], dtype=np.float32)

    encode_queries = encode_passages


def test_batches_are_fixed_however_a_call_is_cut(tmp_path):
    texts = [p.text for p in corpus(20, langs=("en",))]
    assert plan_batches(["bb", "a", "cc", "d", "eee"], 2) == [[4, 0], [2, 1], [3]]  # stable: ties in order
    whole = Recording()
    vectors = PoolEncoder(whole).encode_passages(texts)
    assert [t for batch in whole.batches for t in batch] == sorted(texts, key=len, reverse=True)
    assert all(len(b) == 3 for b in whole.batches[:-1])
    np.testing.assert_array_equal(vectors[:, 1], [len(t) for t in texts])  # rows in the caller's order

    chunked = Recording()  # the embedding cache cuts a call into chunks starting at multiples of a batch
    cached = CachedEncoder(PoolEncoder(chunked), root=tmp_path / "cache", chunk_size=6)
    np.testing.assert_array_equal(cached.encode_passages(texts), vectors)
    assert chunked.batches == whole.batches


# ------------------------------------------------------------------------------------------- --workers


def test_two_workers_write_exactly_the_collection_one_writes(tmp_path, tiny, beir, monkeypatch):
    from hybrid_qdrant.encoding import pool

    one = hq_ingest(beir, tiny, tmp_path / "one")
    assert one.exit_code == 0, one.output
    started = []
    original = pool._Pool.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(len(self.processes))

    monkeypatch.setattr(pool._Pool, "__init__", spy)
    two = hq_ingest(beir, tiny, tmp_path / "two", "--workers", "2")
    assert two.exit_code == 0, two.output
    assert started == [2]
    assert "360 points (360 written" in two.output
    expected = points(tmp_path / "one" / "qdrant")
    assert len(expected) == 360
    assert points(tmp_path / "two" / "qdrant") == expected  # the same points, payloads and vector bits

    again = hq_ingest(beir, tiny, tmp_path / "two", "--workers", "2")  # complete: no worker is started
    assert again.exit_code == 0, again.output
    assert "360 already stored" in again.output and started == [2]


def test_bad_workers_and_launch_settings_are_one_line_errors_before_any_work(tmp_path, beir):
    cores = os.cpu_count() or 1
    for value, message in (
        ("0", "workers must be a positive integer, got 0"),
        ("-2", "workers must be a positive integer, got -2"),
        (str(cores + 1), f"--workers {cores + 1} is more than this machine's {cores} CPU cores"),
    ):
        result = hq_ingest(beir, "no/such/model", tmp_path, "--workers", value)  # no model is looked for
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
    result = hq_ingest(beir, "no/such/model", tmp_path, "--set", "encoder.workers=true")
    assert result.exit_code == 2 and "[encoder] workers must be an integer, got a boolean" in result.output
    launched = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    result = runner.invoke(
        app, ["ingest", "--data-dir", str(beir), "-b", "beir", "--workers", "2"], env=launched
    )
    assert result.exit_code == 2
    assert "every process of the launch is one worker already: drop --workers" in result.output
    result = runner.invoke(app, ["ingest", "--data-dir", str(beir), "-b", "beir"], env=launched)
    assert result.exit_code == 2
    assert "cannot join the launch" in result.output and "torchrun" in result.output
    assert not (tmp_path / "qdrant").exists() and not (tmp_path / "cache").exists()  # nothing written


CHILD = textwrap.dedent(
    """
    import signal
    import sys
    import time
    sys.path.insert(0, {tests!r})
    from test_workers import corpus
    from hybrid_qdrant.encoding.cache import CachedEncoder
    from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
    from hybrid_qdrant.encoding.pool import PoolEncoder
    from hybrid_qdrant.errors import HQError
    from hybrid_qdrant.evaluation.ingest import ingest
    from hybrid_qdrant.store import open_store

    if __name__ == "__main__":
        # Ctrl-C as in a terminal, even when the tests run in a background job (which starts with
        # SIGINT ignored, and Python keeps it ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        settings = EncoderSettings(model={model!r}, batch_size=2, device="cpu")
        pool = PoolEncoder(SentenceTransformerEncoder(settings), workers=2)
        encoder = CachedEncoder(pool, root={cache!r})
        encoder.batch_size = 4

        with_workers = []

        def told(n):
            print("block", *pool.pids, flush=True)
            if pool.pids:
                with_workers.append(n)
            if len(with_workers) == 2:
                # the parent acts on this line: wait for it however slow the machine, so the run cannot
                # finish first (Ctrl-C interrupts the sleep; a killed worker ends the wait; a killed
                # command ends everything)
                deadline = time.monotonic() + 60
                while all(p.is_alive() for p in pool._pool.processes) and time.monotonic() < deadline:
                    time.sleep(0.05)

        try:
            with open_store(location={path!r}, collection="c") as store:
                ingest(corpus(400), encoder, store, block_size=16, progress=told)
        except HQError as exc:
            print("error:", exc, flush=True)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        finally:
            pool.close()
        print("finished", flush=True)
    """
)


def _run_child(script: Path, stop) -> tuple[int, list[str], list[int]]:
    """Run the child in a session of its own; once it has encoded 2 blocks with its workers, call
    ``stop(child pid, worker pids)``. Returns (exit code, output lines, worker pids)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # a process group of its own, as a terminal gives a command
    )
    lines, workers, seen = [], [], 0
    for line in child.stdout:
        lines.append(line)
        pids = [int(pid) for pid in line.split()[1:]] if line.startswith("block") else []
        seen += len(pids) == 2
        if seen == 2 and not workers:
            workers = pids
            stop(child.pid, workers)
    child.wait(timeout=60)
    assert workers, "".join(lines)
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers), "a worker outlived its run"
    return child.returncode, lines, workers


def test_ctrl_c_a_killed_worker_or_command_stop_a_run_cleanly_and_a_rerun_completes_it(tmp_path, tiny):
    script = tmp_path / "child.py"
    path, cache = str(tmp_path / "q"), str(tmp_path / "cache")
    script.write_text(CHILD.format(tests=str(TESTS), model=tiny, cache=cache, path=path))

    # Ctrl-C reaches the whole process group: the workers ignore it, the run stops them and ends
    code, lines, _ = _run_child(script, lambda child, _workers: os.killpg(child, signal.SIGINT))
    output = "".join(lines)
    assert code == 130 and lines[-1] == "interrupted\n", output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output

    # a worker killed: one line naming it, the other worker stopped, what was written kept
    code, lines, workers = _run_child(script, lambda _child, pids: os.kill(pids[0], signal.SIGKILL))
    output = "".join(lines)
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 1 and len(errors) == 1, output
    assert f"pid {workers[0]}) died (killed by signal 9)" in errors[0]
    assert "run the command again to resume" in errors[0]
    assert "finished" not in output and "Traceback" not in output

    # the command itself killed (SIGKILL, nothing to clean up): its workers notice and exit within seconds
    code, lines, _ = _run_child(script, lambda child, _workers: os.kill(child, signal.SIGKILL))
    assert code == -signal.SIGKILL, "".join(lines)

    # the rerun (one process, the same cache) writes what is missing: exactly a clean run's collection
    from hybrid_qdrant.encoding.encoder import SentenceTransformerEncoder

    settings = EncoderSettings(model=tiny, batch_size=2, device="cpu")

    def run(location, cache_dir):
        encoder = CachedEncoder(PoolEncoder(SentenceTransformerEncoder(settings)), root=cache_dir)
        with open_store(location=location, collection="c") as store:
            return ingest(corpus(400), encoder, store, block_size=16)

    with open_store(location=path, collection="c") as store:
        partial = store.count()
    assert 0 < partial < 1200
    stats = run(path, cache)
    assert stats.already_stored == partial and stats.encoded == 1200 - partial
    run(str(tmp_path / "clean"), str(tmp_path / "clean-cache"))
    assert points(path, "c") == points(tmp_path / "clean", "c")


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------------------------------- launches


def _rank(rank: int, world: int, rendezvous: str, kind: str, target: str, out: str) -> None:
    """One process of a 2-process launch (forked): ingest ``corpus(50)`` with the keyword encoder."""
    launch = Launch(rank=rank, world=world, init_method=f"file://{rendezvous}")
    encoder = KeywordEncoder()
    with launch.opened():
        if kind == "relay":
            store = open_store(location=target, collection="c") if rank == 0 else None
        else:
            store = open_store(url=target, collection="c", allow_insecure_key=True)
        try:
            stats = ingest(corpus(50), encoder, store, block_size=16, launch=launch, relay=kind == "relay")
        finally:
            if store is not None:
                store.close()
        parts = launch.gather((stats, encoder.encoded))
    if rank == 0:
        np.save(out, np.asarray([parts], dtype=object), allow_pickle=True)


def _fork(function, *args) -> None:
    """Run ``function(rank, 2, rendezvous, *args)`` in 2 forked processes (no fresh imports: seconds)."""
    rendezvous = Path(args[-1]).with_suffix(".rendezvous")
    context = mp.start_processes(
        function, args=(2, str(rendezvous), *args), nprocs=2, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2 gloo processes did not finish in 120 s")


def _launch(kind: str, target: str, tmp_path: Path) -> tuple:
    out = str(tmp_path / f"{kind}.npy")
    _fork(_rank, kind, target, out)
    return tuple(np.load(out, allow_pickle=True)[0])


def test_a_relayed_launch_writes_what_one_process_writes_through_process_0(tmp_path):
    reference = tmp_path / "one"
    with open_store(location=str(reference), collection="c") as store:
        ingest(corpus(50), KeywordEncoder(), store, block_size=16)
    shared = tmp_path / "two"
    with open_store(location=str(shared), collection="c") as store:  # a partial collection: resumed
        ingest(corpus(50)[:40], KeywordEncoder(), store, block_size=16)
    (stats0, encoded0), (stats1, encoded1) = _launch("relay", str(shared), tmp_path)
    assert points(shared, "c") == points(reference, "c")
    assert (stats0.encoded, stats0.already_stored, stats0.seen) == (110, 40, 150)  # process 0 writes all
    assert encoded0 + encoded1 == 110 and encoded0 > 0 and encoded1 > 0  # both encoded their blocks
    assert stats1.encoded == 0 and stats1.per_language == stats0.per_language


def test_a_launch_on_a_server_writes_its_blocks_from_every_process(tmp_path):
    from fake_qdrant import serve

    with serve() as (url, fake):
        with open_store(url=url, collection="one", allow_insecure_key=True) as store:
            ingest(corpus(50), KeywordEncoder(), store, block_size=16)
        (stats0, encoded0), (stats1, encoded1) = _launch("server", url, tmp_path)  # both create "c"
        assert server_points(url, "c") == server_points(url, "one")
        merged = merge_stats([stats0, stats1])
        assert (merged.encoded, merged.seen, merged.per_language) == (150, 150, stats0.per_language)
        assert (encoded0, encoded1) == (stats0.encoded, stats1.encoded) == (80, 70)  # blocks 0,2,.. / 1,3,..
        assert [path for method, path in fake.requests if method == "PUT" and path == "/collections/c"]


# ------------------------------------------------------------------------------------------- torchrun


TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m hybrid_qdrant.cli ARGS`` (CPU: gloo)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "hybrid_qdrant.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun beside this Python")


@needs_torchrun
def test_torchrun_with_2_cpu_processes_writes_exactly_what_one_process_writes(tmp_path, tiny, beir):
    one = hq_ingest(beir, tiny, tmp_path / "one")
    assert one.exit_code == 0, one.output
    common = ["ingest", "-b", "beir", "--data-dir", str(beir), "--model", tiny, "--batch-size", "4"]
    common += ["--no-cache"]  # the processes' own batches, not the cache's vectors from the run above
    done = torchrun(*common, "--location", str(tmp_path / "two" / "qdrant"))  # process 0 writes for both
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("360 points (360 written") == 1, done.stdout  # process 0 reports
    assert points(tmp_path / "two" / "qdrant") == points(tmp_path / "one" / "qdrant")


@pytest.mark.slow
@needs_torchrun
def test_torchrun_evaluate_on_a_server_reports_what_one_process_reports(tmp_path, tiny, beir):
    from fake_qdrant import serve

    common = ["evaluate", "-b", "beir", "--data-dir", str(beir), "--model", tiny, "--batch-size", "4"]
    with serve() as (url, _fake):
        common += ["--url", url, "--allow-insecure-key", "--no-cache"]
        single = runner.invoke(app, [*common, "-c", "one", "--output", str(tmp_path / "one.json")])
        assert single.exit_code == 0, single.output
        done = torchrun(*common, "-c", "two", "--output", str(tmp_path / "two.json"))
        assert done.returncode == 0, done.stderr
        assert server_points(url, "two") == server_points(url, "one")  # each process wrote its blocks
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["metrics"] == one["metrics"] and two["counts"] == one["counts"]


@pytest.mark.slow
@needs_torchrun
def test_a_killed_torchrun_process_leaves_a_collection_the_next_launch_completes(tmp_path, tiny):
    from fake_qdrant import serve

    folder = benchmark_folder(tmp_path / "big", 8000)  # 24,000 passages: seconds of encoding per process
    common = ["ingest", "-b", "beir", "--data-dir", str(folder), "--model", tiny, "--batch-size", "2"]
    with serve() as (url, fake):
        common += ["--url", url, "--allow-insecure-key", "--no-cache"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        launcher = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "hybrid_qdrant.cli"]
        run = subprocess.Popen([*launcher, *common, "-c", "two"], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not fake.collections.get("two", {}).get("points") and time.monotonic() < deadline:
            time.sleep(0.05)
        rank1 = [pid for pid in _descendants(run.pid) if _environ(pid).get("RANK") == "1"]
        assert len(rank1) == 1
        os.kill(rank1[0], signal.SIGKILL)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode != 0
        partial = len(fake.collections["two"]["points"])
        assert 0 < partial < 24000, stderr
        done = torchrun(*common, "-c", "two")  # the next launch writes what is missing
        assert done.returncode == 0, done.stderr
        assert f"{partial} already stored" in done.stdout
        single = runner.invoke(app, [*common, "-c", "one"])
        assert single.exit_code == 0, single.output
        got, want = server_points(url, "two"), server_points(url, "one")
    assert got.keys() == want.keys() and all(got[k][0] == want[k][0] for k in want)
    # a block cut by the kill is finished in other batches: its vectors agree to float32 rounding
    vectors = [(np.frombuffer(got[k][1], np.float32), np.frombuffer(want[k][1], np.float32)) for k in want]
    assert max(float(np.abs(a - b).max()) for a, b in vectors) < 1e-6


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


class Racing(ArrayStore):
    """A collection another process creates first: the first create attempt is refused."""

    def ensure_collection(self, spec, recreate=False):
        if not self.exists() and not getattr(self, "raced", False):
            self.raced = True
            super().ensure_collection(spec)
            raise StoreError("Wrong input: Collection `c` already exists!")
        return super().ensure_collection(spec)


def test_a_collection_another_process_created_first_is_checked_and_used():
    with pytest.raises(StoreError, match="already exists"):
        ingest(corpus(10), KeywordEncoder(), Racing("c"))  # one process: a real conflict
    store = Racing("c")
    stats = ingest(corpus(10), KeywordEncoder(), store, block_size=8, launch=Launch(rank=1, world=2))
    assert store.count() == stats.encoded == 14  # blocks 1 and 3 of 30 passages in blocks of 8


def _job(rank: int, world: int, rendezvous: str, kind: str, overrides: dict, out: str) -> None:
    """One process of a 2-process launch (forked) running ``hq ingest`` / ``hq evaluate``'s job."""
    from hybrid_qdrant.evaluation.jobs import evaluate_job, ingest_job, load_job

    launch = Launch(rank=rank, world=world, init_method=f"file://{rendezvous}")
    cfg = load_job(None, overrides)
    done = (evaluate_job if kind == "evaluate" else ingest_job)(cfg, launch=launch)
    if rank:
        assert done is None  # process 0 reports
        return
    if kind == "evaluate":
        summary = done.result.metrics()
    else:
        summary = (done.collection, done.points, done.stats.encoded)
    np.save(out, np.asarray([summary], dtype=object), allow_pickle=True)


def test_the_jobs_under_a_launch_give_what_one_process_gives(tmp_path, tiny, beir):
    from fake_qdrant import serve

    from hybrid_qdrant.evaluation.jobs import evaluate_job, ingest_job, load_job

    base = {
        "benchmark.name": "beir",
        "benchmark.data_dir": str(beir),
        "encoder.model": tiny,
        "encoder.batch_size": 4,
        "cache.enabled": False,
    }
    # evaluate into the embedded store: process 0 writes what both encode, then evaluates alone
    one = evaluate_job(load_job(None, {**base, "store.location": str(tmp_path / "one")}))
    out = str(tmp_path / "evaluate.npy")
    _fork(_job, "evaluate", {**base, "store.location": str(tmp_path / "two")}, out)
    assert np.load(out, allow_pickle=True)[0] == one.result.metrics()
    assert points(tmp_path / "two") == points(tmp_path / "one")
    # --recreate: the launch fills the new collection together once, then process 0 evaluates alone
    out = str(tmp_path / "recreate.npy")
    recreate = {**base, "store.location": str(tmp_path / "two"), "collection.recreate": True}
    _fork(_job, "evaluate", recreate, out)
    assert np.load(out, allow_pickle=True)[0] == one.result.metrics()
    with open_store(location=str(tmp_path / "two"), collection="hq-check") as store:
        (rebuilt,) = store.collections()
    assert rebuilt.endswith("_v1") and points(tmp_path / "two", rebuilt) == points(tmp_path / "one")
    # a re-index through an alias on a server: both write the new version, process 0 switches the alias
    with serve() as (url, fake):
        server = {**base, "store.url": url, "store.allow_insecure_key": True}
        single = ingest_job(load_job(None, {**server, "collection.name": "single"}))
        out = str(tmp_path / "ingest.npy")
        _fork(_job, "ingest", {**server, "collection.alias": "live"}, out)
        assert tuple(np.load(out, allow_pickle=True)[0]) == ("live_v1", 360, 360)
        assert fake.aliases == {"live": "live_v1"}
        assert server_points(url, "live_v1") == server_points(url, single.collection)


def test_a_lost_peer_is_one_short_line():
    from hybrid_qdrant.evaluation.launch import _first_sentence

    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:16030. This is typically caused by a remote worker crashing. Check the logs."
    )
    assert _first_sentence(gloo) == "Connection closed by peer [127.0.0.1]:16030"
    assert _first_sentence(RuntimeError("")) == "RuntimeError"


def test_a_worker_that_loads_another_model_is_a_model_error(tiny):
    from types import SimpleNamespace

    from hybrid_qdrant.errors import ModelError

    settings = EncoderSettings(model=tiny, batch_size=2, device="cpu")
    # this process believes in another model than the one the workers load from the settings
    believed = SimpleNamespace(settings=settings, dim=32, fingerprint="0" * 16, max_seq_length=None)
    pool = PoolEncoder(believed, workers=2, threads=1)
    try:
        with pytest.raises(ModelError, match="loaded another model than this process"):
            pool.encode_passages(["ein Satz", "a sentence", "una frase"])
    finally:
        pool.close()
