"""Loading a model by hub id without the hub: one quick check, the cached copy or one line naming the fix;
and the short model labels used for default names. Hub-free: the endpoint is a closed local port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import build_tiny_st_model

from hybrid_qdrant.encoding.encoder import load_sentence_transformer, model_label, use_hub_cache_only
from hybrid_qdrant.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return build_tiny_st_model(tmp_path_factory.mktemp("models") / "tiny", ["a river", "ein Fluss"])


def hub_cache_with(model_dir: str, repo_id: str, home: Path) -> None:
    """Lay ``model_dir`` out in ``home`` as the Hugging Face cache holds a downloaded ``repo_id``."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT, encoding="utf-8")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PROBE = """
import json, logging, time
logging.basicConfig(level=logging.WARNING)  # an application's logging, as hq sets it up
import sentence_transformers  # imported before the clock starts
from huggingface_hub.utils import logging as hub_logging
from hybrid_qdrant.encoding.encoder import load_sentence_transformer
from hybrid_qdrant.errors import ModelError

out = {}
start = time.perf_counter()
try:
    load_sentence_transformer("org/not-downloaded")
except ModelError as exc:
    out["error"] = str(exc)
out["error_seconds"] = time.perf_counter() - start
start = time.perf_counter()
model = load_sentence_transformer("org/tiny", device="cpu")
out["cached_seconds"] = time.perf_counter() - start
out["dim"] = model.encode(["a river"]).shape[1]
hub_logging.get_logger("huggingface_hub.file_download").warning("a hub warning")
print(json.dumps(out))
"""


def test_an_unreachable_hub_fails_at_once_naming_the_fix_and_a_cached_model_still_loads(tmp_path, tiny):
    home = tmp_path / "hf"
    hub_cache_with(tiny, "org/tiny", home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "SENTENCE_"))}
    env.update(
        HF_HOME=str(home),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",  # nothing listens: refused, as offline
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] == (
        "model 'org/not-downloaded' is not in the local Hugging Face cache and the hub "
        f"({env['HF_ENDPOINT']}) is unreachable (ConnectError; offline?); download it where the hub is "
        "reachable and pass --model PATH (a sentence-transformers folder)"
    )
    assert out["error_seconds"] < 3  # hub retries took 76 s here (5 per file, 3 files)
    assert out["cached_seconds"] < 10 and out["dim"] == 32  # no retries on the way to the cache
    assert "Retrying" not in done.stderr
    assert done.stderr.count("a hub warning") == 1  # printed twice before: hub's own handler + the root's


def test_hf_hub_offline_fails_before_any_request(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelError) as caught:
        load_sentence_transformer("org/not-downloaded")
    message = str(caught.value)
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in message
    assert message.endswith("pass --model PATH (a sentence-transformers folder)") and "\n" not in message


def test_a_decoder_hub_id_offline_fails_the_same_way(monkeypatch, tmp_path):
    from hybrid_qdrant.training.decoder import build_decoder_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"HF_HUB_OFFLINE is set; .* pass --model PATH"):
        build_decoder_model("org/some-7b-decoder")


def test_a_reachable_hub_loads_as_before(monkeypatch):
    monkeypatch.setattr("hybrid_qdrant.encoding.encoder.hub_unreachable", lambda: None)
    assert use_hub_cache_only("org/anything") is False


@pytest.mark.parametrize(
    ("model", "label"),
    [
        ("intfloat/multilingual-e5-small", "multilingual-e5-small"),
        ("sentence-transformers/LaBSE", "LaBSE"),
        ("runs/cpu-small/final", "cpu-small"),
        ("runs/cpu-small/final/", "cpu-small"),
        ("./runs/x/checkpoint-50", "x-checkpoint-50"),
        ("./models/me5-small", "me5-small"),
        ("/cache/hub/models--intfloat--multilingual-e5-small/snapshots/" + SNAPSHOT, "multilingual-e5-small"),
    ],
)
def test_model_label_names_a_model_by_something_meaningful(model, label):
    assert model_label(model) == label


def test_model_label_of_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / "run7" / "final").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "run7" / "final")
    assert model_label(".") == "run7"
    monkeypatch.chdir(tmp_path / "run7")
    assert model_label("final") == "run7"
