"""The CF models of a catalog, trained once and kept in the data directory: the one retrieval scores with and
those the ranker reads (`rank/cf_sources.py`), each trained on what its source declares."""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from genre_agent.data.catalog import Catalog
from genre_agent.data.interactions import InteractionMatrix
from genre_agent.rank.cf_sources import RATED_MIN_USERS, READ
from genre_agent.retrieval.cf import CFModel, make_cf

# A build step reports (step name, done, total); the CLI shows it as a progress bar.
Progress = Callable[[str, int, int], None]
# CF models kept per catalog: the served interactions, an evaluation's training part and a calibration's
# validation part each have their own, so switching between them does not retrain.
CF_MODELS_KEPT = 3
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)  # what writing into a folder this process cannot write raises


def load_or_train(catalog: Catalog, matrix: InteractionMatrix, name: str, kind: str, root: Path,
                  progress: Progress | None) -> tuple[CFModel | None, bool]:
    """The CF model `kind` for these interactions: loaded if trained before, else trained and saved atomically
    in `root`, under `name`; and whether it was trained now. None when there is no interaction."""
    if matrix.matrix.nnz == 0:
        return None, False
    key = f"{name}-{catalog.interactions_fingerprint()}-{catalog.items_fingerprint()}"
    target = root / key
    model = make_cf(kind)
    if (target / "done.json").is_file():
        try:
            model.load(target)
            return model, False
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated or tampered
            warnings.warn(f"{target}: the saved {name} model is unreadable ({exc}); training it again.",
                          stacklevel=2)
            model = make_cf(kind)
    if progress:
        progress(f"training {name}", 0, 1)
    model.fit(matrix.matrix)
    tmp = root / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        if exc.errno not in READ_ONLY:
            raise
        warnings.warn(f"{root} cannot be written ({exc.strerror}): the {name} model trained for this "
                      "run is used without being saved.", stacklevel=2)
        return model, True
    model.save(tmp)
    (tmp / "done.json").write_text(json.dumps({"model": name, "users": matrix.matrix.shape[0],
                                               "items": matrix.matrix.shape[1], "nnz": matrix.matrix.nnz}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    others = sorted((p for p in root.iterdir() if p.name.startswith(f"{name}-") and p.name != key),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[CF_MODELS_KEPT - 1:]:  # models of older interactions
        shutil.rmtree(stale, ignore_errors=True)
    model.load(target)
    if progress:
        progress(f"training {name}", 1, 1)
    return model, True


def ranker_models(catalog: Catalog, positives: InteractionMatrix, root: Path, progress: Progress | None,
                  loaded: Mapping[str, CFModel]) -> tuple[dict[str, CFModel], InteractionMatrix]:
    """Every CF model the ranker reads, by name (`loaded`: those already loaded, reused), and the matrix of
    every rating that the models of every rating are fed from."""
    ratings = InteractionMatrix.build(catalog.interactions, catalog.items.index, -np.inf)
    matrices = {"positives": positives, "ratings": ratings.shared(RATED_MIN_USERS)}
    models: dict[str, CFModel] = {}
    for source in READ:
        if source.trained_on == "ratings" and ratings.matrix.nnz == positives.matrix.nnz:
            continue  # every rating is positive: it would be the model of the positives again
        model = loaded.get(source.name) or load_or_train(catalog, matrices[source.trained_on], source.name,
                                                         source.model, root, progress)[0]
        if model is not None:
            models[source.name] = model
    return models, ratings
