"""The learned ranker: a LightGBM LambdaRank model over `rank.features`, saved as one JSON file per catalog
state (its interactions and items fingerprints) in the data directory, written atomically.

The file holds two models: one for a catalog user's request without words (learnt from interaction
histories) and, when trained, one for conversations that name titles (learnt from dialogues and request
sets; `ranker_for` in retrieval/pool.py says which orders a request). They are apart because they learn
different answers from different signals: a history's held-out next like versus what a person asked for, where
anchors, words and asked genres exist; the history model (and so the offline protocol) is the same whether
conversations are trained or not.

A missing, stale (trained for other interactions or items) or unreadable file is not an error: the service
keeps the hand-weighted order and warns, naming the command that rebuilds it (`genre-agent fit`). Serving
alone uses a ranker of the same items trained on other interactions (stored feedback since), with a warning
(`open_ranker`).

The file records the settings its features were computed with (`feature_settings`): a ranker served with other
ones reads features it never learnt from, so it is said to be stale, as a stale calibration is, with the
command that trains it again; it is used until then.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genre_agent.errors import DataDirError
from genre_agent.rank.features import GROUPS, HISTORY, NAMES
from genre_agent.rank.mentions import Mentions
from genre_agent.settings import Settings

FILE_PREFIX = "ranker-"
KEPT = 3  # rankers kept per catalog items: the served state, an evaluation's training part and its validation part
ROUNDS = 100
# Chosen on ml-latest-small's validation-of-validation examples: docs/ranker.md, "The model's parameters".
PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "num_threads": 2, "verbose": -1, "deterministic": True, "force_row_wise": True,
}


# The retrieval settings the features are not computed with: the length and the variety of the candidate
# list. Every other one is (the hand-weighted score of `hand_z`, the half-life of `recent_likes`, the CF model
# of `recent_cf`), so a new retrieval setting is recorded without being listed.
NOT_READ = frozenset({"candidates", "mmr_lambda"})


def feature_settings(settings: Settings) -> dict[str, Any]:
    """The settings a ranker's features are computed with, by dotted key, as its file records them."""
    values = settings.retrieval.model_dump(mode="json", exclude=set(NOT_READ))
    return {f"retrieval.{name}": value for name, value in sorted(values.items())}


def ranker_path(directory: Path, fingerprint: str) -> Path:
    """The file of the ranker trained for a catalog state ("<interactions fp>-<items fp>")."""
    return directory / f"{FILE_PREFIX}{fingerprint}.json"


@dataclass
class Ranker:
    """A trained model, the features it reads (in column order) and, beside the model of word-less requests,
    the model of conversations if one was trained."""

    model: Any  # lightgbm.Booster, imported lazily
    features: tuple[str, ...] = HISTORY
    info: dict[str, Any] = field(default_factory=dict)  # what training measured: rows, groups, seconds, ...
    conversation: Ranker | None = None
    mentions: Mentions | None = None  # of the model of conversations: the dialogues it learnt from
    settings: dict[str, Any] | None = None  # what its features were computed with (None: not recorded)

    def score(self, X: np.ndarray) -> np.ndarray:
        """One score per row of a feature matrix of every feature (`NAMES`; higher = ranked first)."""
        return np.asarray(self.model.predict(X[:, _columns(self.features)], num_threads=1), dtype=np.float64)

    def importance(self) -> dict[str, float]:
        """Each feature group's share of the model's total split gain."""
        gain = dict(zip(self.features, self.model.feature_importance("gain"), strict=True))
        total = sum(gain.values()) or 1.0
        return {group: round(sum(gain.get(n, 0.0) for n in names) / total, 4) for group, names in GROUPS.items()}

    def save(self, path: Path) -> None:
        """Write the model beside its final name, then rename it into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self._as_dict()), encoding="utf-8")
        os.replace(tmp, path)
        items = path.stem.rsplit("-", 1)[-1]  # rankers of the same items: the same catalog
        others = sorted((p for p in path.parent.glob(f"{FILE_PREFIX}*-{items}.json") if p != path),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in others[KEPT - 1:]:
            stale.unlink(missing_ok=True)

    def _as_dict(self) -> dict[str, Any]:
        data = {"features": list(self.features), "info": self.info, "model": self.model.model_to_string()}
        if self.conversation is not None:
            data["conversation"] = self.conversation._as_dict()
        if self.mentions is not None:
            data["mentions"] = self.mentions.as_json()
        if self.settings is not None:
            data["settings"] = self.settings
        return data

    def changed(self, settings: dict[str, Any]) -> str | None:
        """Which of the settings its features were computed with differ from `settings` (None: none)."""
        if self.settings is None:
            return "its file does not record the settings its features were computed with"
        diff = [f"{key} {self.settings.get(key)!r} then, {value!r} now" for key, value in settings.items()
                if self.settings.get(key) != value]
        return f"its features were computed with other settings: {'; '.join(diff)}" if diff else None

    @classmethod
    def load(cls, path: Path) -> Ranker:
        """A saved ranker; DataDirError when the file is unreadable or not a ranker of these features."""
        import lightgbm as lgb

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            parts = [data, data["conversation"]] if "conversation" in data else [data]
            models = [cls(lgb.Booster(model_str=p["model"]), tuple(p["features"]), dict(p.get("info", {})),
                          mentions=Mentions.of(p["mentions"].items()) if "mentions" in p else None)
                      for p in parts]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, lgb.basic.LightGBMError) as exc:
            raise DataDirError(f"{path}: the ranker file is unreadable ({type(exc).__name__}); run "
                               "`genre-agent fit` to train it again.") from exc
        if models[0].features != HISTORY or any(not set(m.features) <= set(NAMES) or
                                                m.model.num_feature() != len(m.features) for m in models):
            raise DataDirError(f"{path}: the ranker was trained on other features; run `genre-agent fit`.")
        models[0].conversation = models[1] if len(models) > 1 else None
        models[0].settings = data.get("settings")
        return models[0]


def _columns(features: tuple[str, ...]) -> list[int]:
    return [NAMES.index(name) for name in features]


def train(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0, *,
          features: tuple[str, ...] = HISTORY) -> Ranker:
    """Fit LambdaRank on rows of every feature (`NAMES`) grouped by request (`groups`: rows per request, in
    order; `y`: the relevance of each row, 1 = the item the user went on to like), reading `features`."""
    import lightgbm as lgb

    data = lgb.Dataset(X[:, _columns(features)], y, group=groups, feature_name=list(features))
    model = lgb.train({**PARAMS, "seed": seed}, data, num_boost_round=ROUNDS)
    return Ranker(model, features, {"rows": int(len(y)), "requests": int(len(groups)),
                                    "trees": int(model.num_trees())})


def open_ranker(directory: Path, fingerprint: str, shipped: Path | None = None, *, settings: dict[str, Any],
                same_items_fallback: bool = False, ratings: int | None = None) -> Ranker | None:
    """The ranker trained for this catalog state (in `directory`, else as shipped in the catalog's folder
    `shipped`), or None with a warning saying why and what to run.

    `same_items_fallback` (serving only): without a file for this exact state, the newest ranker trained for the
    same items on other interactions (in `directory`, else shipped) is used, with a warning: its features are
    computed when serving, so a few stored ratings since do not make it wrong. Evaluation never passes it: an
    offline evaluation must read the ranker of its own training part only, or it could read a model that
    learnt its test interactions. `ratings`: the catalog's interactions now, for that warning. `settings`: what
    the features are computed with now (`feature_settings`); a ranker trained with others is stale, and said
    to be."""
    exact = _exact(directory, fingerprint, shipped)
    path = _same_items(directory, fingerprint, shipped) if exact is None and same_items_fallback else exact
    if path is None:
        stale = any(d.is_dir() and any(d.glob(f"{FILE_PREFIX}*.json")) for d in (directory, shipped) if d)
        other = "items" if same_items_fallback else "interactions or items"
        why = f"was trained for other {other} (stale)" if stale else "has not been trained"
        warnings.warn(f"the learned ranker of this catalog {why}: answers use the hand-weighted order. "
                      "Run `genre-agent fit` to train it.", stacklevel=3)
        return None
    try:
        ranker = Ranker.load(path)
    except DataDirError as exc:
        warnings.warn(f"{exc} Until then answers use the hand-weighted order.", stacklevel=3)
        return None
    if exact is None:
        trained = ranker.info.get("interactions")
        counts = f" ({trained:,} ratings, the catalog now has {ratings:,})" if trained and ratings else ""
        warnings.warn(f"the learned ranker of this catalog was trained on other (older) interactions{counts}, "
                      "e.g. before feedback was stored: answers use it all the same. Run `genre-agent fit` to "
                      "refresh it.", stacklevel=3)
    changed = ranker.changed(settings)
    if changed is not None:
        warnings.warn(f"the learned ranker of this catalog is stale ({changed}): answers use it until then. "
                      "Run `genre-agent fit` to train it with the settings in force.", stacklevel=3)
    if ranker.conversation is None:
        warnings.warn("the learned ranker of this catalog was trained without conversations: conversations "
                      "that name titles (\"like X\", a catalog user's words) use the hand-weighted order. Run "
                      "`genre-agent fit --dialogues ... --requests ...` to train it on them.", stacklevel=3)
    return ranker


def _exact(directory: Path, fingerprint: str, shipped: Path | None) -> Path | None:
    """The file of exactly this catalog state, in the data directory, else shipped."""
    for folder in (directory, shipped):
        if folder is not None and ranker_path(folder, fingerprint).is_file():
            return ranker_path(folder, fingerprint)
    return None


def _same_items(directory: Path, fingerprint: str, shipped: Path | None) -> Path | None:
    """Of the files of the same items ("<any interactions fp>-<these items' fp>", in the data directory or
    shipped), the one with a model of conversations, trained on the most interactions, the newest: an
    evaluation's training part (fewer interactions, no conversations) is never preferred to the served one."""
    items = fingerprint.rsplit("-", 1)[-1]
    found = [p for folder in (directory, shipped) if folder is not None
             for p in folder.glob(f"{FILE_PREFIX}*-{items}.json")]
    return max(found, key=_preference) if found else None


def _preference(path: Path) -> tuple[bool, int, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        talks, trained = "conversation" in data, int(data.get("info", {}).get("interactions", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        talks, trained = False, -1  # unreadable: last
    return talks, trained, path.stat().st_mtime
