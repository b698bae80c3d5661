"""Backends: LangChain chat models, a real OpenAI-compatible server (llama.cpp's), and the model registry."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from genre_agent.errors import BackendUnavailableError, ConfigError, ContextLengthError, TurnCancelled
from genre_agent.llm.backends import FakeBackend, OutputMode, backend_class, make_backend
from genre_agent.llm.backends.base import cancellable, listening
from genre_agent.llm.backends.langchain import LangChainBackend
from genre_agent.llm.backends.llamacpp import LlamaCppBackend
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


def test_capabilities_are_declared_not_guessed(tmp_path: Path) -> None:
    assert backend_class("llamacpp").capabilities.logprobs and backend_class("fake").capabilities.logprobs
    assert not backend_class("openai").capabilities.logprobs
    plain_chat = LangChainBackend(FakeListChatModel(responses=[]))
    assert plain_chat.capabilities.output_mode is OutputMode.PROMPT  # not an OpenAI chat model
    with pytest.raises(ConfigError, match="cannot read next-token probabilities"):
        plain_chat.option_logprobs(MESSAGES, ["A", "B"])
    settings = load_settings(data_dir=tmp_path, **{"backend.name": "fake"})
    assert isinstance(make_backend(settings), FakeBackend)
    tokens, counted_by = backend_class("openai").count_tokens(settings, MESSAGES)
    assert tokens == round(5 * 1.3) and "estimate" in counted_by and "openai" in counted_by


def test_moved_settings_name_their_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "genre-agent.toml"
    config.write_text("[backend]\nretries = 2\n")
    with pytest.raises(ConfigError, match="'backend.retries' is now 'ranking.retries'"):
        load_settings(config)
    monkeypatch.setenv("GENRE_AGENT_BACKEND__THREADS", "4")
    with pytest.raises(ConfigError, match="'backend.threads' is now 'backend.llamacpp.threads'"):
        load_settings()
    monkeypatch.delenv("GENRE_AGENT_BACKEND__THREADS")
    monkeypatch.setenv("GENRE_AGENT_BACKEND__LLAMACPP__THREADS", "4")
    assert load_settings().backend.llamacpp.threads == 4


def _openai_with(handler: Callable[[dict[str, object]], httpx.Response], mode: OutputMode) -> OpenAIBackend:
    """An OpenAIBackend whose HTTP goes to `handler` (the request body in, a response out)."""
    transport = httpx.MockTransport(lambda request: handler(json.loads(request.content)))
    return OpenAIBackend("m", "http://server.test/v1", None, output_mode=mode, max_retries=0,
                         http_client=httpx.Client(transport=transport))


def _sse(pieces: list[str], usage: bool = True) -> bytes:
    """A streamed chat completion as an OpenAI-compatible server sends it (server-sent events)."""
    def chunk(delta: dict[str, str], finish: str | None = None, **extra: object) -> str:
        body = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    events = [chunk({"role": "assistant"})] + [chunk({"content": p}) for p in pieces]
    tail = {"usage": {"prompt_tokens": 3, "completion_tokens": len(pieces), "total_tokens": 3 + len(pieces)}}
    events.append(chunk({}, "stop", **(tail if usage else {})))
    return ("".join(events) + "data: [DONE]\n\n").encode()


def _answer(text: str, usage: bool = True) -> httpx.Response:
    return httpx.Response(200, content=_sse([text[i:i + 3] for i in range(0, len(text), 3)], usage),
                          headers={"Content-Type": "text/event-stream"})


def test_openai_output_mode_auto_keeps_the_first_form_the_server_takes() -> None:
    sent: list[object] = []

    def llama_server(body: dict[str, object]) -> httpx.Response:  # takes only llama.cpp's own form
        fmt = body.get("response_format")
        sent.append(fmt)
        if isinstance(fmt, dict) and fmt.get("type") == "json_object" and "schema" in fmt:
            return _answer("{}")
        return httpx.Response(400, json={"error": {"message": "unsupported response_format"}})

    backend = _openai_with(llama_server, OutputMode.AUTO)
    assert backend.complete(MESSAGES, {"type": "object"}, 10).text == "{}"
    assert [f["type"] for f in sent] == ["json_schema", "json_object"]  # type: ignore[index]
    assert backend.capabilities.output_mode is OutputMode.JSON_OBJECT_SCHEMA
    sent.clear()
    backend.complete(MESSAGES, {"type": "object"}, 10)
    assert sent == [{"type": "json_object", "schema": {"type": "object"}}]  # remembered: one request


def test_openai_explicit_output_mode_sends_only_that_form() -> None:
    sent: list[object] = []

    def strict(body: dict[str, object]) -> httpx.Response:
        sent.append(body.get("response_format"))
        return httpx.Response(400, json={"error": {"message": "no"}})

    backend = _openai_with(strict, OutputMode.JSON_SCHEMA)
    with pytest.raises(BackendUnavailableError, match="set backend.openai.output_mode"):
        backend.complete(MESSAGES, {"type": "object"}, 10)
    assert len(sent) == 1 and sent[0]["type"] == "json_schema"  # type: ignore[index]


def test_openai_backend_reports_an_unreachable_server() -> None:
    backend = OpenAIBackend("m", "http://127.0.0.1:9/v1", None, timeout_s=2)
    with pytest.raises(BackendUnavailableError, match="Cannot reach"):
        backend.complete(MESSAGES, None, 10)


@pytest.mark.real
def test_openai_backend_ranks_through_a_real_llama_cpp_server(llama_server: str) -> None:
    backend = OpenAIBackend("smol", llama_server, None, timeout_s=120)
    outcome = rank(backend, MESSAGES, CANDIDATES, 2, retries=0, reason_max_chars=80, max_tokens=200)
    assert {i.item_id for i in outcome.items} <= {"10", "20", "30"} and len(outcome.items) == 2


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


class _TooLong(FakeBackend):
    def complete(self, messages: list[dict[str, str]], schema: object, max_tokens: int) -> object:
        self.calls.append(messages)
        raise ContextLengthError("The prompt does not fit the model's context (the prompt is 9000 tokens)")


def test_a_prompt_longer_than_the_context_falls_back_without_re_asking() -> None:
    backend = _TooLong()
    outcome = rank(backend, MESSAGES, CANDIDATES, 2, retries=2, reason_max_chars=80, max_tokens=200)
    assert outcome.fallback and len(backend.calls) == 1  # re-asking the same prompt cannot help
    assert [i.item_id for i in outcome.items] == [c.item_id for c in CANDIDATES[:2]]
    assert "does not fit the model's context" in outcome.errors[0]


@pytest.mark.real
def test_llamacpp_says_when_a_prompt_does_not_fit_its_context(tmp_path: Path) -> None:
    name, gguf = resolve_model("smollm2-135m", tmp_path)
    backend = LlamaCppBackend(gguf, name, n_ctx=256, threads=1)  # llama.cpp's smallest context
    long = [{"role": "user", "content": "tell me about space " * 200}]
    with pytest.raises(ContextLengthError, match=r"The prompt is \d+ tokens and the model's context holds 256: "
                                                 r"shorten the message, or raise backend.llamacpp.n_ctx"):
        backend.complete(long, None, 8)
    with pytest.raises(ContextLengthError, match="context holds 256"):
        backend.option_logprobs(long, ["A", "B"])
    assert backend.complete([{"role": "user", "content": "hi"}], None, 2).prompt_tokens > 0  # still usable


def test_a_model_file_changed_in_place_is_hashed_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 13, point 8: a tampered file given back its size and mtime passed the remembered checksum."""
    import hashlib
    import os

    from genre_agent.llm import models

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"a" * 100)
    spec = ModelSpec(name="tiny", description="", install="-", files=(("genre_agent", "tiny.gguf"),),
                     sha256=hashlib.sha256(b"a" * 100).hexdigest(), size=100, license="-")
    monkeypatch.setitem(MODELS, "tiny", spec)
    monkeypatch.setattr(models, "_package_file", lambda package, rel, spec: gguf)
    assert resolve_model("tiny", tmp_path / "models") == ("tiny", gguf)
    before = gguf.stat()
    gguf.write_bytes(b"b" * 100)
    os.utime(gguf, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    with pytest.raises(BackendUnavailableError, match="checksum"):
        resolve_model("tiny", tmp_path / "models")


@pytest.mark.real
def test_a_cancelled_turn_stops_llama_cpp_between_two_tokens(tmp_path: Path) -> None:
    """Issue 13, point 5: an abandoned request held the model for its whole answer. The same streamed decoding
    hands each piece of text to a listener as it comes (what streams the model's reasons)."""
    name, gguf = resolve_model("smollm2-135m", tmp_path)
    backend = LlamaCppBackend(gguf, name, n_ctx=1024, threads=2)
    story = [{"role": "user", "content": "Write a very long story about a journey through space."}]
    pieces: list[str] = []
    started = time.perf_counter()
    with listening(pieces.append):  # the decoded text is handed over token by token as it comes
        full = backend.complete(story, None, 300)
    uncancelled = time.perf_counter() - started
    assert "".join(pieces) == full.text and len(pieces) == full.completion_tokens > 100
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.perf_counter()
    with cancellable(cancel), pytest.raises(TurnCancelled):
        backend.complete(story, None, 300)
    assert full.completion_tokens > 100 and time.perf_counter() - started < uncancelled / 2
    with cancellable(cancel), pytest.raises(TurnCancelled):  # nor does it start once cancelled
        backend.option_logprobs(story, ["A", "B"])
    assert backend.complete([{"role": "user", "content": "hi"}], None, 2).completion_tokens > 0  # still usable


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A real HTTP server with `handler` on a free local port, serving from a daemon thread, and its /v1 URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class _Flaky:
    """A real HTTP server on a free port that answers the first `failures` chat requests with `status`
    (Retry-After: 0) and then a valid completion; it counts the requests."""

    def __init__(self, failures: int, status: int) -> None:
        flaky = self
        self.requests = 0

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers["Content-Length"]))
                flaky.requests += 1
                if flaky.requests <= failures:
                    body = json.dumps({"error": {"message": "busy", "type": "server_error"}}).encode()
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                else:
                    body = _sse(["ok"])
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server, self.url = _serve(Handler)


def test_openai_backend_retries_busy_servers_then_says_so() -> None:
    flaky = _Flaky(failures=2, status=429)
    try:
        backend = OpenAIBackend("m", flaky.url, None, timeout_s=10, max_retries=2)
        assert backend.complete(MESSAGES, None, 10).text == "ok" and flaky.requests == 3
        flaky.requests = 0
        impatient = OpenAIBackend("m", flaky.url, None, timeout_s=10, max_retries=1)
        with pytest.raises(BackendUnavailableError, match="kept answering 429 .* after 1 retries"):
            impatient.complete(MESSAGES, None, 10)
        assert flaky.requests == 2
    finally:
        flaky.server.shutdown()


def test_openai_backend_streams_each_piece_to_the_listener() -> None:
    backend = _openai_with(lambda body: _answer(GOOD) if body.get("stream") is True else httpx.Response(400),
                           OutputMode.JSON_SCHEMA)
    pieces: list[str] = []
    with listening(pieces.append):
        answer = backend.complete(MESSAGES, {"type": "object"}, 200)
    assert answer.text == GOOD and "".join(pieces) == GOOD and len(pieces) == len(range(0, len(GOOD), 3))
    assert (answer.prompt_tokens, answer.completion_tokens) == (3, len(pieces))  # the server's usage
    quiet = _openai_with(lambda body: _answer("{}", usage=False), OutputMode.JSON_SCHEMA)
    assert quiet.complete(MESSAGES, None, 10).completion_tokens == 1  # no usage sent: one token per piece


class _Trickle:
    """A real HTTP server that streams `pieces` pieces of a completion, one every `every_s` seconds, after
    `stall_s` seconds of silence following the second; it records how many it wrote and whether the client
    closed the connection before the end."""

    def __init__(self, pieces: int, every_s: float, stall_s: float = 0.0) -> None:
        trickle = self
        self.written = 0
        self.closed_early = threading.Event()

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = _sse(["x"] * pieces).split(b"\n\n")
                try:
                    for n, event in enumerate(events):
                        self.wfile.write(event + b"\n\n")
                        self.wfile.flush()
                        trickle.written = n
                        time.sleep(stall_s if n == 2 else every_s)
                except (BrokenPipeError, ConnectionResetError):
                    trickle.closed_early.set()

        self.server, self.url = _serve(Handler)


def test_a_cancelled_turn_closes_the_openai_stream_between_two_pieces() -> None:
    trickle = _Trickle(pieces=400, every_s=0.02)  # 8 s to the end if nobody stops it
    try:
        backend = OpenAIBackend("m", trickle.url, None, timeout_s=10)
        cancel = threading.Event()
        heard_pieces: list[str] = []

        def listener(piece: str) -> None:
            heard_pieces.append(piece)
            if len(heard_pieces) == 3:
                cancel.set()  # the deadline passes, the client leaves, or Ctrl-C

        with cancellable(cancel), listening(listener), pytest.raises(TurnCancelled):
            backend.complete(MESSAGES, None, 500)
        assert len(heard_pieces) == 3
        assert trickle.closed_early.wait(5), "the server was never told the client had gone"
        assert trickle.written < 400
    finally:
        trickle.server.shutdown()


def test_an_openai_server_that_stalls_mid_answer_is_reported() -> None:
    trickle = _Trickle(pieces=5, every_s=0.0, stall_s=3.0)
    try:
        backend = OpenAIBackend("m", trickle.url, None, timeout_s=0.5, max_retries=0)
        with pytest.raises(BackendUnavailableError, match="stopped in the middle of its answer.*timeout_s"):
            backend.complete(MESSAGES, None, 50)
    finally:
        trickle.server.shutdown()


def test_a_server_that_stays_busy_or_stalls_leaves_the_retrieval_order() -> None:
    """Hosted-backend faults: bounded retries with backoff, then the answer falls back to the retrieval order
    and evidence reasons; never an error, never a re-ask of a server that is not answering."""
    flaky = _Flaky(failures=10, status=503)
    trickle = _Trickle(pieces=5, every_s=0.0, stall_s=3.0)
    try:
        for url, timeout_s in ((flaky.url, 10.0), (trickle.url, 0.5)):
            backend = OpenAIBackend("m", url, None, timeout_s=timeout_s, max_retries=1, cooldown_s=60)
            outcome = rank(backend, MESSAGES, CANDIDATES, 2, retries=2, reason_max_chars=80, max_tokens=50)
            assert outcome.fallback and outcome.reasks == 0 and len(outcome.errors) == 1
            assert [i.item_id for i in outcome.items] == [c.item_id for c in CANDIDATES[:2]]
            again = rank(backend, MESSAGES, CANDIDATES, 2, retries=2, reason_max_chars=80, max_tokens=50)
            assert again.fallback and "not asked again for 60 s" in again.errors[0]  # no second wait
        assert flaky.requests == 2  # the call and the client's one retry; none during the cool-down
        eager = OpenAIBackend("m", flaky.url, None, timeout_s=10, max_retries=0, cooldown_s=0)
        for _ in range(2):
            with pytest.raises(BackendUnavailableError):
                eager.complete(MESSAGES, None, 10)
        assert flaky.requests == 4  # no cool-down: each call asks
    finally:
        flaky.server.shutdown()
        trickle.server.shutdown()
