"""Issue 27: generated requests to the chat endpoint (bodies of any shape, message text of any characters,
lone surrogates and control characters included): never a 5xx, never a traceback, and a stream always ends
with [DONE] or an error chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from genre_agent.chat.agent import Agent
from genre_agent.interfaces.server import create_app
from genre_agent.settings import ServerSettings

from conftest import tiny_settings

KEY = "fuzz-key-0123456789abcdef"
PHRASES = ["I loved Star Quest", "no comedy please", "only comedies from the 90s", "more", "why the first one?",
           "the second one", "I hated Night Terror", "start over", "something funny", "older films"]

# any character, and often one that breaks text: lone surrogates (which Hypothesis does not draw unasked),
# escape sequences, NUL, carriage return, zero-width and bidi controls
any_char = st.one_of(st.characters(codec=None), st.sampled_from(["\ud800", "\udfff", "\x1b", "\x00", "\r",
                                                                  "\u200b", "\u202e", "\ufeff"]))
noise = st.lists(any_char, max_size=20).map("".join)  # st.text would leave the lone surrogates out
text = st.one_of(st.lists(any_char, max_size=80).map("".join), st.sampled_from(PHRASES),  # and a phrase the
                 st.tuples(noise, st.sampled_from(PHRASES), noise).map(" ".join))  # agent acts on, in any company
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=8)
parts = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]), "text": json_value}),
                max_size=3)
message = st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system"]), text),
                                 "content": st.one_of(text, st.none(), parts)})
turn = st.tuples(st.lists(message, max_size=3), st.fixed_dictionaries({"role": st.just("user"), "content": text}))
chat = st.fixed_dictionaries({"messages": turn.map(lambda t: [*t[0], t[1]]), "stream": st.booleans()},
                             optional={"user": text, "model": text, "temperature": json_value})
odd = st.one_of(json_value, st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": json_value, "content": json_value}), max_size=4)},
    optional={"stream": json_value, "session_id": text, "user": json_value}))
# most requests are turns the agent answers (any text in them); the rest are bodies of any shape, or not JSON
kinds = {"turn": chat.map(lambda b: json.dumps(b).encode()), "odd": odd.map(lambda b: json.dumps(b).encode()),
         "bytes": st.binary(max_size=200)}
raw = st.sampled_from(["turn"] * 8 + ["odd", "bytes"]).flatmap(kinds.__getitem__)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    agent = Agent.from_config(tiny_settings(tmp_path_factory.mktemp("fuzz"), k=2))
    limits = ServerSettings(turns_per_minute=100_000, feedback_per_minute=100_000)  # the fuzz, not the limits
    with TestClient(create_app(agent, limits, {KEY: None}), raise_server_exceptions=False) as made:
        yield made


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(payload=raw, in_session=st.booleans())
def test_generated_chat_requests_never_get_a_5xx(client: TestClient, payload: bytes, in_session: bool) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if in_session:  # a turn of a server-side session also stores its feedback and the session
        headers["X-Session-Id"] = client.post("/v1/sessions", headers=headers).json()["id"]
    answer = client.post("/v1/chat/completions", content=payload, headers=headers)
    event(f"status {answer.status_code}")
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        last: Any = [line for line in answer.text.splitlines() if line.startswith("data: ")][-1]
        assert last == "data: [DONE]" or "error" in json.loads(last.removeprefix("data: "))
    else:
        assert set(answer.json()) >= ({"error"} if answer.status_code >= 400 else {"choices", "genre_agent"})
