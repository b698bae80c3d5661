"""One contract, run against every backend registered in the entry point group `genre_agent.backends`: the
built-ins on real parts where they are cheap (llama.cpp on the bundled small model, the openai backend against
a real llama.cpp server), and any plug-in installed alongside (a test below installs one from a temporary
package and runs this very file against it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from genre_agent.errors import ConfigError, TurnCancelled
from genre_agent.llm.backends import Backend, BackendOptions, OutputMode, backend_class, make_backend
from genre_agent.llm.backends.base import cancellable, listening
from genre_agent.llm.backends.langchain import LangChainBackend
from genre_agent.plugins import backend_plugins
from genre_agent.settings import Settings, load_settings

MESSAGES = [{"role": "system", "content": "Answer with JSON."},
            {"role": "user", "content": "Pick one of the films 10 and 20."}]
SCHEMA = {"type": "object", "properties": {"item_id": {"enum": ["10", "20"]}}, "required": ["item_id"]}
ANSWER = json.dumps({"item_id": "10"})
REAL = {"llamacpp", "openai"}  # load a model: marked `real`


@dataclass
class Contracted:
    backend: Backend
    settings: Settings


def _settings(name: str, data_dir: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=data_dir, **{"backend.name": name, **overrides})


def _build(name: str, request: pytest.FixtureRequest, data_dir: Path) -> Contracted:
    """The backend `name` built from settings (real parts for the built-ins); langchain's from a fake chat model,
    as no LangChain provider package is installed offline."""
    if name == "fake":
        answers = data_dir / "answers.txt"
        answers.write_text("\n".join([ANSWER] * 50) + "\n")
        settings = _settings(name, data_dir, **{"backend.model": str(answers)})
    elif name == "llamacpp":
        settings = _settings(name, data_dir, **{"backend.model": "smollm2-135m", "backend.llamacpp.n_ctx": 1024,
                                                "backend.llamacpp.adapter": "none"})
    elif name == "openai":
        url = request.getfixturevalue("llama_server")
        settings = _settings(name, data_dir, **{"backend.model": "smol", "backend.openai.max_retries": 0,
                                                "backend.openai.base_url": url})
    elif name == "langchain":
        settings = _settings(name, data_dir)
        return Contracted(LangChainBackend(FakeListChatModel(responses=[ANSWER] * 50), "fake-chat"), settings)
    else:  # a plug-in: its defaults
        settings = _settings(name, data_dir)
    return Contracted(make_backend(settings), settings)


@pytest.fixture(scope="module", params=[pytest.param(n, marks=[pytest.mark.real] if n in REAL else [])
                                        for n in backend_plugins()])
def contracted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Contracted:
    return _build(request.param, request, tmp_path_factory.mktemp(request.param))


def test_registered_under_its_name_with_its_options_as_a_settings_section(contracted: Contracted) -> None:
    backend, settings = contracted.backend, contracted.settings
    cls = backend_class(settings.backend.name)
    assert isinstance(backend, cls) and cls.name == backend.name == settings.backend.name
    assert issubclass(cls.Options, BackendOptions)
    section = type(settings.backend).model_fields[cls.name]  # [backend.<name>], built from the registry
    assert section.annotation is cls.Options
    assert isinstance(settings.backend.options(cls.Options), cls.Options)
    assert cls.Options().model_dump() == _settings(cls.name, settings.data_dir).backend.options(cls.Options) \
        .model_dump()  # every option has a default: an unset section is the defaults
    assert isinstance(backend.model, str) and backend.model
    exact = cls.count_tokens.__func__ is not Backend.count_tokens.__func__  # type: ignore[attr-defined]
    assert cls.capabilities.local_tokenizer == exact  # declared: it counts tokens itself


def test_a_completion_reaches_the_listener_as_it_is_decoded(contracted: Contracted) -> None:
    pieces: list[str] = []
    with listening(pieces.append):
        answer = contracted.backend.complete(MESSAGES, None, 16)
    assert answer.text and "".join(pieces) == answer.text
    assert answer.prompt_tokens >= 0 and answer.completion_tokens >= 0


def test_structured_output_follows_the_schema_where_the_backend_constrains_it(contracted: Contracted) -> None:
    backend = contracted.backend
    if backend.capabilities.output_mode is OutputMode.PROMPT:
        pytest.skip(f"{backend.name} ({backend.model}) declares output mode prompt: validation and re-asks "
                    "do the rest, nothing is promised")
    answer = backend.complete(MESSAGES, SCHEMA, 30)
    assert json.loads(answer.text)["item_id"] in {"10", "20"}


def test_a_cancelled_turn_asks_nothing(contracted: Contracted) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with cancellable(cancelled), pytest.raises(TurnCancelled):
        contracted.backend.complete(MESSAGES, None, 16)
    if contracted.backend.capabilities.logprobs:
        with cancellable(cancelled), pytest.raises(TurnCancelled):
            contracted.backend.option_logprobs(MESSAGES, ["A", "B"])


def test_option_logprobs_as_declared(contracted: Contracted) -> None:
    backend = contracted.backend
    asked = [{"role": "user", "content": "A. Aliens\nB. Big\nAnswer with one letter."}]
    if not backend.capabilities.logprobs:
        with pytest.raises(ConfigError, match="cannot read next-token probabilities"):
            backend.option_logprobs(asked, ["A", "B"])
        return
    scores = backend.option_logprobs(asked, ["A", "B"])
    assert len(scores) == 2 and all(isinstance(s, float) and s <= 0.0 for s in scores)


def test_prompt_tokens_are_counted(contracted: Contracted) -> None:
    cls = type(contracted.backend)
    tokens, counted_by = cls.count_tokens(contracted.settings, MESSAGES)
    assert isinstance(tokens, int) and tokens > 0 and counted_by


def test_options_of_no_registered_backend_are_refused() -> None:
    class Unregistered(BackendOptions):
        pass

    with pytest.raises(ConfigError, match="No backend of these settings has the options Unregistered"):
        load_settings().backend.options(Unregistered)


def test_an_unregistered_name_says_what_is_registered() -> None:
    with pytest.raises(ConfigError, match="choose one of fake, langchain, llamacpp, openai, or install"):
        backend_class("ollama")
    with pytest.raises(ConfigError, match="backend.name: Input should be 'fake', 'langchain', 'llamacpp' or "
                                          "'openai'"):
        load_settings(**{"backend.name": "ollama"})


DOCS = Path(__file__).parents[1] / "docs" / "backends.md"
ECHO = re.search(r"```python\n# my_backend.py\n(.*?)```", DOCS.read_text(), re.S)[1]  # type: ignore[index]

USE_ECHO = '''
import sys
from pathlib import Path
from typer.testing import CliRunner
from genre_agent.interfaces.cli import app
from genre_agent.llm.backends import make_backend
from genre_agent.settings import load_settings

settings = load_settings(Path(sys.argv[1]))
print(make_backend(settings).complete([{"role": "user", "content": "hello"}], None, 8).text)
print(CliRunner().invoke(app, ["recommend", "--help"]).output)
'''


def test_a_backend_installed_from_another_package_is_found_and_meets_the_contract(tmp_path: Path) -> None:
    """A third-party backend is one module and one entry point: nothing in the project is edited. The module is
    the example of docs/backends.md."""
    (tmp_path / "my_backend.py").write_text(ECHO)
    info = tmp_path / "my_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genre_agent.backends]\necho = my_backend:EchoBackend\n"
                                           "broken = no_such_module:Backend\n")
    config = tmp_path / "genre-agent.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[backend]\nname = "echo"\n[backend.echo]\n'
                      'prefix = "you said: "\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "COLUMNS": "200"}
    used = subprocess.run([sys.executable, "-c", USE_ECHO, str(config)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert used.returncode == 0, used.stderr
    assert used.stdout.startswith("you said: hello\n")  # its own settings section, from the config file
    assert "echo | fake | langchain | llamacpp | openai" in used.stdout  # the CLI lists it (and `broken`)
    assert "backend plug-in 'broken' (no_such_module:Backend" in used.stderr  # left out, with a warning
    elsewhere = tmp_path / "elsewhere"  # not where the config file is
    elsewhere.mkdir()
    contract = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-k", "echo", "-p",
                               "no:cacheprovider"], capture_output=True, text=True, env=env, cwd=elsewhere,
                              timeout=300)
    assert contract.returncode == 0, contract.stdout + contract.stderr
    counts = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (passed|skipped)", contract.stdout))
    assert counts == {"passed": 5, "skipped": 1}, contract.stdout  # skipped: echo promises no schema
