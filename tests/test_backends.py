"""Backends: LangChain chat models, a real OpenAI-compatible server (llama.cpp's), and the model registry."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from genre_agent.errors import BackendUnavailableError, ConfigError
from genre_agent.llm.backends import make_backend
from genre_agent.llm.backends.langchain import LangChainBackend
from genre_agent.llm.backends.openai_compat import OpenAIBackend
from genre_agent.llm.models import MODELS, ModelSpec, resolve_model
from genre_agent.llm.ranking import rank
from genre_agent.settings import load_settings

from helpers import CANDIDATES

MESSAGES = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Pick 2."}]
GOOD = json.dumps({"recommendations": [
    {"item_id": "30", "reason": "Close to Splash (1984), which you rated highly."},
    {"item_id": "10", "reason": "Close to Alien (1979), which you rated highly."},
]})


def test_langchain_chat_model_goes_through_the_same_validation() -> None:
    chat = FakeListChatModel(responses=["not json", GOOD])
    outcome = rank(LangChainBackend(chat), MESSAGES, CANDIDATES, 2, retries=1, reason_max_chars=140,
                   max_tokens=200)
    assert not outcome.fallback and outcome.reasks == 1
    assert [i.item_id for i in outcome.items] == ["30", "10"]


def test_openai_backend_needs_a_server_or_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        make_backend(load_settings(data_dir=tmp_path, **{"backend.name": "openai"}))


def test_openai_backend_reports_an_unreachable_server() -> None:
    backend = OpenAIBackend("m", "http://127.0.0.1:9/v1", None, timeout_s=2)
    with pytest.raises(BackendUnavailableError, match="Cannot reach"):
        backend.complete(MESSAGES, None, 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.real
def test_openai_backend_against_a_real_llama_cpp_server(tmp_path: Path) -> None:
    _, gguf = resolve_model("smollm2-135m", tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
         "--n_ctx", "2048", "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        backend = OpenAIBackend("smol", f"http://127.0.0.1:{port}/v1", None, timeout_s=120)
        deadline = time.time() + 60
        while True:
            try:
                backend.client.models.list()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        outcome = rank(backend, MESSAGES, CANDIDATES, 2, retries=0, reason_max_chars=80, max_tokens=200)
        answer = backend.complete(MESSAGES, {"type": "object", "properties": {"item_id": {"enum": ["10", "20"]}},
                                             "required": ["item_id"]}, 30)
        assert json.loads(answer.text)["item_id"] in {"10", "20"}  # the server honoured the schema
        assert answer.prompt_tokens > 0
        assert {i.item_id for i in outcome.items} <= {"10", "20", "30"} and len(outcome.items) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_registered_model_with_a_wrong_checksum_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    spec = ModelSpec(name="notice", description="not a model", install="pip install nothing",
                     files=(("genre_agent", "retrieval/vendor/NOTICE.md"),), sha256="0" * 64, size=1, license="-")
    monkeypatch.setitem(MODELS, "notice", spec)
    with pytest.raises(BackendUnavailableError, match="does not match the recorded checksum"):
        resolve_model("notice", tmp_path)


def test_multi_part_model_is_checked_before_it_is_moved_into_place(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    parts = (("genre_agent", "retrieval/vendor/NOTICE.md"), ("genre_agent", "errors.py"))
    spec = ModelSpec(name="two-parts", description="", install="pip install nothing", files=parts,
                     sha256="0" * 64, size=1, license="-")
    monkeypatch.setitem(MODELS, "two-parts", spec)
    with pytest.raises(BackendUnavailableError):
        resolve_model("two-parts", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial or unchecked file is left behind


def test_smollm_is_verified_once_and_remembered(tmp_path: Path) -> None:
    name, path = resolve_model("smollm2-135m", tmp_path)
    assert name == "smollm2-135m" and path.suffix == ".gguf"
    assert "smollm2-135m" in json.loads((tmp_path / "verified.json").read_text())


def test_unknown_model_and_missing_gguf(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="smollm2-135m"):
        resolve_model("gpt-9", tmp_path)
    with pytest.raises(BackendUnavailableError, match="no such GGUF"):
        resolve_model(str(tmp_path / "missing.gguf"), tmp_path)
