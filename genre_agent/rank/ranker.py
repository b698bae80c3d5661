"""The learned ranker: a LightGBM LambdaRank model over `rank.features`, saved as one JSON file per catalog
state (its interactions and items fingerprints) in the data directory, written atomically.

A missing, stale (trained for other interactions or items) or unreadable file is not an error: the service
keeps the hand-weighted order and warns, naming the command that rebuilds it (`genre-agent fit`).
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
from genre_agent.rank.features import GROUPS, NAMES

FILE_PREFIX = "ranker-"
KEPT = 3  # rankers kept per catalog: the served state, an evaluation's training part and its validation part
EARLY_STOPPING_ROUNDS = 30
MAX_ROUNDS = 400
PARAMS: dict[str, Any] = {  # LightGBM's defaults but a slower rate and larger leaves for ~10^5 rows
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": 0.05, "num_leaves": 31,
    "min_data_in_leaf": 50, "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
    "num_threads": 2, "verbose": -1, "deterministic": True, "force_row_wise": True,
}


def ranker_path(directory: Path, fingerprint: str) -> Path:
    """The file of the ranker trained for a catalog state, in that catalog's ranker folder."""
    return directory / f"{FILE_PREFIX}{fingerprint}.json"


@dataclass
class Ranker:
    """A trained model and the feature names it was trained on (in column order)."""

    model: Any  # lightgbm.Booster, imported lazily
    features: tuple[str, ...] = NAMES
    info: dict[str, Any] = field(default_factory=dict)  # what training measured: rows, groups, seconds, ...

    def score(self, X: np.ndarray) -> np.ndarray:
        """One score per row of a feature matrix (higher = ranked first)."""
        return np.asarray(self.model.predict(X, num_threads=1), dtype=np.float64)

    def importance(self) -> dict[str, float]:
        """Each feature group's share of the model's total split gain."""
        gain = dict(zip(self.features, self.model.feature_importance("gain"), strict=True))
        total = sum(gain.values()) or 1.0
        return {group: round(sum(gain.get(n, 0.0) for n in names) / total, 4) for group, names in GROUPS.items()}

    def save(self, path: Path) -> None:
        """Write the model beside its final name, then rename it into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"features": list(self.features), "info": self.info,
                                   "model": self.model.model_to_string()}), encoding="utf-8")
        os.replace(tmp, path)
        others = sorted((p for p in path.parent.glob(f"{FILE_PREFIX}*.json") if p != path),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in others[KEPT - 1:]:
            stale.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Ranker:
        """A saved ranker; DataDirError when the file is unreadable or not a ranker of these features."""
        import lightgbm as lgb

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            features = tuple(data["features"])
            model = lgb.Booster(model_str=data["model"])
        except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as exc:
            raise DataDirError(f"{path}: the ranker file is unreadable ({type(exc).__name__}); run "
                               "`genre-agent fit` to train it again.") from exc
        if features != NAMES or model.num_feature() != len(NAMES):
            raise DataDirError(f"{path}: the ranker was trained on other features; run `genre-agent fit`.")
        return cls(model, features, data.get("info", {}))


def train(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0, *,
          features: tuple[str, ...] = NAMES) -> Ranker:
    """Fit LambdaRank on rows grouped by request (`groups`: rows per request, in order; `y`: 1 = the item the
    user went on to like). A fifth of the requests is held aside to stop adding trees when it stops helping."""
    import lightgbm as lgb

    starts = np.concatenate([[0], np.cumsum(groups)])
    order = np.random.default_rng(seed).permutation(len(groups))
    held = np.zeros(len(groups), dtype=bool)
    held[order[: max(1, len(groups) // 5)]] = len(groups) > 1

    def part(which: np.ndarray) -> lgb.Dataset:
        rows = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in np.flatnonzero(which)])
        return lgb.Dataset(X[rows], y[rows], group=groups[which], feature_name=list(features),
                           free_raw_data=False)

    fit_part = part(~held)
    sets = [part(held)] if held.any() else []
    model = lgb.train({**PARAMS, "seed": seed}, fit_part, num_boost_round=MAX_ROUNDS, valid_sets=sets,
                      callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)] if sets else [])
    return Ranker(model, features, {"rows": int(len(y)), "requests": int(len(groups)),
                                    "trees": int(model.num_trees())})


def open_ranker(directory: Path, fingerprint: str) -> Ranker | None:
    """The ranker trained for this catalog state, or None (with a warning saying why and what to run)."""
    path = ranker_path(directory, fingerprint)
    if not path.is_file():
        stale = directory.is_dir() and any(directory.glob(f"{FILE_PREFIX}*.json"))
        why = ("was trained for other interactions or items (stale)" if stale else "has not been trained")
        warnings.warn(f"the learned ranker of this catalog {why}: answers use the hand-weighted order. "
                      "Run `genre-agent fit` to train it.", stacklevel=3)
        return None
    try:
        return Ranker.load(path)
    except DataDirError as exc:
        warnings.warn(f"{exc} Until then answers use the hand-weighted order.", stacklevel=3)
        return None
