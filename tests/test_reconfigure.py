"""Reconfiguring without code: prompt profiles, edited template copies, `prompts` and `config` commands,
a second domain (books), and a catalog without interactions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from genre_agent.data.catalog import load_catalog
from genre_agent.errors import ConfigError
from genre_agent.interfaces.cli import app
from genre_agent.interfaces.template_check import check
from genre_agent.llm.backends import FakeBackend
from genre_agent.pipeline import Recommender
from genre_agent.settings import load_settings

from conftest import TINY

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def _init(tmp_path: Path, name: str = "default") -> Path:
    target = tmp_path / "mine"
    result = runner.invoke(app, ["prompts", "init", str(target), "--from", name])
    assert result.exit_code == 0, result.output
    return target


def test_prompts_list_shows_every_shipped_profile() -> None:
    result = runner.invoke(app, ["prompts", "list"])
    assert result.exit_code == 0
    for name in ("default", "concise", "explain", "critic"):
        assert name in result.stdout


@pytest.mark.parametrize("name", ["default", "concise", "explain", "critic"])
def test_shipped_profiles_pass_the_check(name: str) -> None:
    assert check(name) == []


@pytest.mark.parametrize("name", ["default", "concise", "explain", "critic"])
def test_every_shipped_set_copies_into_a_valid_set(tmp_path: Path, name: str) -> None:
    from genre_agent.llm.prompts import load_profile, shipped_sets

    mine = _init(tmp_path, name)
    assert check(mine) == []
    assert load_profile(mine).description == load_profile(shipped_sets()[name]).description


def test_init_copies_a_self_contained_set_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    mine = _init(tmp_path, "critic")
    assert {p.name for p in mine.iterdir()} >= {"system.j2", "rank.j2", "understand.j2", "understand_system.j2",
                                                "score.j2", "profile.toml"}
    assert "extends" not in (mine / "profile.toml").read_text()
    assert "reason_max_chars = 200" in (mine / "profile.toml").read_text()
    assert check(mine) == []
    again = runner.invoke(app, ["prompts", "init", str(mine)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_check_reports_file_line_for_each_kind_of_breakage(tmp_path: Path) -> None:
    mine = _init(tmp_path)
    rank = mine / "rank.j2"
    original = rank.read_text()
    line = next(n for n, text in enumerate(original.splitlines(), 1) if "{% for c in candidates %}" in text)

    rank.write_text(original.replace("{% for c in candidates %}", "{% for c in candidats %}"))
    result = runner.invoke(app, ["prompts", "check", str(mine)])
    assert result.exit_code == 1
    assert f"{rank}:{line}: 'candidats' is not a variable of rank.j2. Did you mean 'candidates'?" in result.stdout

    rank.write_text(original.replace("{% endfor %}", "{% endfo %}", 1))
    [problem] = check(mine)
    assert problem.path == rank and "syntax error" in problem.message and problem.line > 1

    rank.write_text(original.replace("{{ c.title }}", "{{ c.titel }}"))
    [problem] = check(mine)
    assert problem.path == rank and "titel" in problem.message

    rank.write_text(original)
    system = mine / "system.j2"
    system.write_text(system.read_text().replace('"reason"', '"why"'))
    [problem] = check(mine)
    assert problem.path == system and "expects" in problem.message and problem.line > 1


def test_an_undocumented_variable_is_reported(tmp_path: Path) -> None:
    mine = _init(tmp_path)
    system = mine / "system.j2"
    system.write_text(system.read_text() + "\nThe user asks: {{ query }}\n")
    [problem] = check(mine)
    assert problem.path == system and "'query'" in problem.message and "header" in problem.message


def _tiny_recommender(tmp_path: Path, prompts: str, backend: FakeBackend) -> Recommender:
    settings = load_settings(catalog=str(TINY), data_dir=tmp_path / "data", prompts=prompts,
                             **{"backend.name": "fake"})
    return Recommender.open(settings, backend=backend)


def test_an_edited_copy_changes_the_prompt_on_the_next_request(tmp_path: Path) -> None:
    mine = _init(tmp_path)
    fake = FakeBackend()
    rec = _tiny_recommender(tmp_path, str(mine), fake)
    rec.recommend("alice", k=2)
    assert "French" not in fake.calls[-1][1]["content"]
    rank = mine / "rank.j2"
    rank.write_text(rank.read_text().replace("Pick the {{ k }} best",
                                             "Only recommend films made before 1980. Answer in French. "
                                             "Pick the {{ k }} best"))
    rec.recommend("alice", k=2)  # the same Recommender: the edit is picked up without a restart
    assert "Only recommend films made before 1980. Answer in French." in fake.calls[-1][1]["content"]


def test_profiles_change_wording_and_reason_length(tmp_path: Path) -> None:
    fake = FakeBackend()
    schema_max = lambda: fake.schemas[-1]["properties"]["recommendations"]["items"]["properties"][  # noqa: E731
        "reason"]["maxLength"]
    _tiny_recommender(tmp_path, "concise", fake).recommend("alice", k=2)
    assert schema_max() == 80 and "no more than twelve words" in fake.calls[-1][0]["content"]
    _tiny_recommender(tmp_path, "critic", fake).recommend("alice", k=2)
    assert schema_max() == 200 and "drawback:" in fake.calls[-1][1]["content"]
    result = _tiny_recommender(tmp_path, "explain", fake).recommend("alice", k=2)
    assert schema_max() == 240 and "facts:" in fake.calls[-1][1]["content"]
    assert all(len(r.reason) <= 240 for r in result.recommendations)


def test_config_show_names_the_source_of_each_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "genre-agent.toml"
    config.write_text('k = 7\n[retrieval]\ncandidates = 30\n')
    monkeypatch.setenv("GENRE_AGENT_RANKING__RETRIES", "3")
    result = runner.invoke(app, ["config", "show", "--config", str(config), "--prompts", "critic"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert rows["k"][0] == "7" and rows["k"][1].startswith("file")
    assert rows["retrieval.candidates"][0] == "30"
    assert rows["ranking.retries"] == ["3", "env"]
    assert rows["prompts"] == ["critic", "flag"]
    assert rows["backend.model"] == ["smollm2-135m", "default"]


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "genre-agent.toml"
    config.write_text("[retrieval]\ncandidate = 30\n")
    with pytest.raises(ConfigError, match="unknown setting 'retrieval.candidate'. Did you mean "
                                          "'retrieval.candidates'"):
        load_settings(config)
    monkeypatch.setenv("GENRE_AGENT_BACKEND__MODLE", "x")
    with pytest.raises(ConfigError, match="'backend.modle'. Did you mean 'backend.model'"):
        load_settings()
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2 and "backend.model" in result.output


@pytest.fixture(scope="module")
def small_books(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped goodbooks catalog cut to its 300 most-rated books (same files, same catalog.toml)."""
    source = ROOT / "catalogs" / "goodbooks"
    folder = tmp_path_factory.mktemp("books")
    ratings = pd.read_csv(source / "ratings.csv")
    keep = ratings.book_id.value_counts().index[:300]
    books = pd.read_csv(source / "books.csv", dtype=str)
    books[books.book_id.astype(int).isin(keep)].to_csv(folder / "books.csv", index=False)
    ratings[ratings.book_id.isin(keep) & (ratings.user_id < 3000)].to_csv(folder / "ratings.csv", index=False)
    for name in ("shelves.csv.gz", "shelf-mapping.toml", "catalog.toml"):
        shutil.copy(source / name, folder / name)
    return folder


def test_books_catalog_reads_shelves_as_genres_and_tags(small_books: Path) -> None:
    books = load_catalog(str(small_books))
    assert books.spec.item_noun_plural == "books"
    frank = books.items[books.items.title == "The Diary of a Young Girl"].iloc[0]
    assert "holocaust" in frank.tags and "to-read" not in frank.tags  # noise shelves are not shipped
    assert {"biography", "memoir", "history"} <= set(frank.genres)  # shelves listed as genres
    assert "Anne Frank" in frank.authors and frank.year == 1947
    assert "By Anne Frank" in frank.text


def test_recommending_books_with_the_same_code(small_books: Path, tmp_path: Path) -> None:
    books = load_catalog(str(small_books))
    user = books.interactions.user_id.value_counts().index[0]
    result = runner.invoke(app, ["recommend", "--catalog", str(small_books), "--user", str(user), "-k", "3",
                                 "--json", "--backend", "fake", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    seen = set(books.interactions[books.interactions.user_id == user].item_id)
    assert len(data["recommendations"]) == 3
    assert all(r["item_id"] in books.items.index and r["item_id"] not in seen for r in data["recommendations"])
    render = runner.invoke(app, ["prompts", "render", "--catalog", str(small_books), "--user", str(user),
                                 "-k", "3", "--data-dir", str(tmp_path)])
    assert render.exit_code == 0, render.output
    assert "books" in render.stdout and "movie" not in render.stdout
    assert "| authors: " in render.stdout
    assert "prompt tokens (smollm2-135m tokenizer" in render.stderr


def test_a_catalog_without_interactions_recommends_from_text(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    pd.DataFrame({"sku": ["a1", "b2", "c3"],
                  "name": ["Trail running shoes", "Espresso machine", "Waterproof hiking boots"],
                  "category": ["Sports", "Kitchen", "Sports"]}).to_csv(folder / "products.csv", index=False)
    (folder / "catalog.toml").write_text(
        'name = "shop"\nitem_noun = "product"\nitem_noun_plural = "products"\n'
        '[items]\npath = "products.csv"\nid = "sku"\ntitle = "name"\ngenres = "category"\n'
        '[text]\ntemplate = "{title}. Category: {genres}."\n')
    common = ["--catalog", str(folder), "--backend", "fake", "--data-dir", str(tmp_path / "d")]
    result = runner.invoke(app, ["recommend", "--query", "shoes for the mountains", "-k", "2", "--json", *common])
    assert result.exit_code == 0, result.output
    ids = [r["item_id"] for r in json.loads(result.stdout)["recommendations"]]
    assert set(ids) == {"a1", "c3"}
    assert "CF is skipped" in result.stderr
    unknown = runner.invoke(app, ["recommend", "--user", "u1", *common])
    assert unknown.exit_code == 2


def test_mmr_lambda_trades_score_for_variety(tmp_path: Path) -> None:
    """On the tiny catalog, the two Star Quest films are near-duplicates: with a low lambda the second slot
    goes to a different kind of film. Popularity weighs as for a catalog user, so the query's relevance
    orders the list (a new user's popularity weight would put the most liked Star Quest first)."""
    def top2(lam: float) -> list[str]:
        settings = load_settings(catalog=str(TINY), data_dir=tmp_path / "data", **{
            "backend.name": "fake", "retrieval.mmr_lambda": lam, "retrieval.weight_popularity_new_user": 0.05})
        rec = Recommender.open(settings, backend=FakeBackend())
        return [r.item_id for r in rec.recommend(query="space adventure sequel", k=2).recommendations]

    relevant, diverse = top2(1.0), top2(0.2)
    assert relevant == ["2", "1"]  # Star Quest II, then Star Quest
    assert diverse[0] == "2" and diverse[1] not in {"1", "2"}


def test_a_profile_can_be_chosen_per_request(tmp_path: Path) -> None:
    fake = FakeBackend()
    rec = _tiny_recommender(tmp_path, "default", fake)
    rec.recommend("alice", k=2, prompts="critic")
    assert "drawback:" in fake.calls[-1][1]["content"]
    rec.recommend("alice", k=2)
    assert "drawback:" not in fake.calls[-1][1]["content"]


def test_a_misspelled_variable_fails_when_the_set_is_loaded(tmp_path: Path) -> None:
    from genre_agent.errors import TemplateError

    mine = _init(tmp_path)
    (mine / "system.j2").write_text((mine / "system.j2").read_text().replace("{{ item_noun }}", "{{ item_nuon }}"))
    with pytest.raises(TemplateError, match=r"system.j2:\d+: 'item_nuon' is not a variable of system.j2. Did you "
                                            r"mean 'item_noun'\?"):
        _tiny_recommender(tmp_path, str(mine), FakeBackend())  # before any request is made


def test_standing_rules_from_config_apply_to_every_request(tmp_path: Path) -> None:
    from genre_agent.filters import Filters

    config = tmp_path / "genre-agent.toml"
    config.write_text('[rules]\nexclude_genres = ["Comedy"]\nyear_max = 2000\n')
    settings = load_settings(config, catalog=str(TINY), data_dir=tmp_path / "data", **{"backend.name": "fake"})
    fake = FakeBackend()
    rec = Recommender.open(settings, backend=fake)
    result = rec.recommend(query="anything", k=6, filters=Filters(year_min=1986))
    ids = {r.item_id for r in result.recommendations}
    assert ids == {"1", "2"}  # not 3, 4, 6 (comedies), 5 (1985, before the request's year_min)
    assert "no Comedy" in fake.calls[-1][1]["content"] and "up to 2000" in fake.calls[-1][1]["content"]


def test_a_table_valued_setting_is_one_key(tmp_path: Path) -> None:
    config = tmp_path / "genre-agent.toml"
    config.write_text('[rules]\nwhere = { language_code = "eng" }\n')
    assert load_settings(config).rules.where == {"language_code": "eng"}
    result = runner.invoke(app, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "language_code" in result.stdout
