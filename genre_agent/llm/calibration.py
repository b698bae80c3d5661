"""What the configured LLM was measured to do well on this catalog: the saved calibration and the one in force.

`genre-agent calibrate` (the measurement is `eval/calibrate.py`) measures, on a validation split carved from
the training interactions only (each user's last *training* positive held out, as `genre-agent eval --tune`
does; the evaluation's test items are never seen):

- ranking: the weight of the model's ranking in the rank fusion with the retrieval order, tuned by sampled
  NDCG@10 (label log-probabilities where the backend reads them, its JSON ranking otherwise), routed only
  when the paired bootstrap interval of its gain over weight 0 lies above 0;
- reasons: the share of the reasons it writes for the top k (one call per item) that pass the grounding
  check, and the share that are informative too (say a fact the evidence sentence does not): reasons are
  routed to the model only when both clear their bar (REASONS_MIN, INFORMATIVE_MIN);
- reading chat messages: with `--dialogues`, Recall@10 on the dev part of real dialogues with each field group
  of the model's reading added to the rules, against rules alone (rules only without it).

The result is saved as JSON in the data directory, keyed by the catalog's fingerprint, the backend, the
model and a hash of the template set. Calibrations of the bundled model for the shipped catalogs ship with
the package (`genre_agent/llm/calibrations/`) and are used when no local one exists. A catalog with no
calibration of its own starts from what its model was measured to do on the shipped catalogs (`elsewhere`):
for the bundled model, no role goes to it. A model the package never measured is asked for every role.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.data.catalog import Catalog
from genre_agent.llm.adapters import adapter_tag
from genre_agent.llm.prompts import Prompts
from genre_agent.schemas import Candidate
from genre_agent.settings import Settings

READING_FIELDS = ("intent", "titles", "genres", "years")  # what a model's reading may add, group by group
REASONS_MIN = 0.9  # the share of grounded reasons below which reasons come from the evidence template
INFORMATIVE_MIN = 0.6  # the share of grounded and informative reasons below which they do too (issue 24)
SHIPPED = Path(__file__).parent / "calibrations"


def template_hash(prompts: Prompts) -> str:
    """Changes when any template of the set (or a set it extends) changes."""
    digest = hashlib.sha256()
    for name, path in sorted(prompts.files().items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def model_id(settings: Settings) -> str:
    """The model as the backend names it, without loading it: a registered name, a GGUF file name, or the
    server's model id; with a LoRA adapter in force, `+<adapter file stem>` after it."""
    model = settings.backend.model
    if settings.backend.name == "llamacpp" and model.endswith(".gguf"):
        model = Path(model).name
    return "fake" if settings.backend.name == "fake" else model + adapter_tag(settings)


class Key(BaseModel):
    model_config = ConfigDict(frozen=True)

    catalog: str
    catalog_fingerprint: str = Field(description="of the items (feedback joining the ratings does not "
                                     "make a calibration stale)")
    backend: str
    model: str
    templates: str = Field(description="hash of the template set's files")

    def filename(self) -> str:
        exact = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:10]
        safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in self.model)
        return f"{self.catalog}-{self.backend}-{safe}-{exact}.json"

    def same_model(self, other: Key) -> bool:
        return (self.catalog_fingerprint, self.backend, self.model) == \
            (other.catalog_fingerprint, other.backend, other.model)


def key_for(settings: Settings, catalog: Catalog, prompts: Prompts) -> Key:
    return Key(catalog=catalog.name, catalog_fingerprint=catalog.items_fingerprint(),
               backend=settings.backend.name, model=model_id(settings), templates=template_hash(prompts))


class Ranking(BaseModel):
    method: Literal["logprobs", "json"]
    weight: float = Field(description="tuned weight of the model's ranking; ties go to the smaller weight")
    users: int
    permutations: int
    grid: list[dict[str, float]] = Field(description="validation NDCG@10 (sampled) per weight")
    gain_ci95: tuple[float, float] | None = Field(None, description="paired bootstrap interval of the NDCG@10 "
                                                  "gain of `weight` over weight 0")

    @property
    def gain(self) -> float:
        at = {row["weight_llm"]: row["val_NDCG@10"] for row in self.grid}
        return at[self.weight] - at[0.0]

    @property
    def routed_weight(self) -> float:
        """The tuned weight where its gain is measured to be real (interval above 0), else 0: no ranking call."""
        return self.weight if self.gain_ci95 is not None and self.gain_ci95[0] > 0 else 0.0


class ReasonSample(BaseModel):
    """One reason the model wrote, the check's verdict, and what it was checked against."""

    title: str
    reason: str
    accepted: bool = Field(description="it passed the grounding check")
    informative: bool = Field(False, description="grounded, and it says a fact the evidence sentence does not")
    problem: str | None = None
    candidate: Candidate
    history_titles: list[str]


class Reasons(BaseModel):
    accepted: int = Field(description="reasons that passed the grounding check")
    informative: int = Field(0, description="grounded reasons that say a fact the evidence sentence does not "
                             "(0 in calibrations from before this was measured)")
    asked: int = Field(description="reasons asked for: k per sampled user")
    users: int
    samples: list[ReasonSample] = Field([], description="what the model wrote, with the check's verdict")

    @property
    def rate(self) -> float:
        return self.accepted / self.asked if self.asked else 0.0

    @property
    def informative_rate(self) -> float:
        return self.informative / self.asked if self.asked else 0.0

    @property
    def routed(self) -> bool:
        """Reasons go to the model: grounded and informative often enough."""
        return self.rate >= REASONS_MIN and self.informative_rate >= INFORMATIVE_MIN


class FieldGain(BaseModel):
    """Recall@10 on the dialogue cases with one field group of the model's reading added to the rules."""

    recall: float
    gain: float = Field(description="minus rules only, on the same cases")
    ci95: tuple[float, float] = Field(description="paired bootstrap interval of the gain")


class Reading(BaseModel):
    """The model's reading of chat messages, per field group (READING_FIELDS), on dev dialogues."""

    measured: bool = False
    dialogues: str = ""
    cases: int = 0
    rules_recall: float | None = Field(None, description="Recall@10 with the rules alone")
    per_field: dict[str, FieldGain] = {}
    fields: list[str] = Field([], description="the groups routed to the model: gain interval above 0")
    note: str = ("not measured: `genre-agent calibrate --dialogues FILE` measures it on real dialogues; "
                 "until then messages are read by rules only")

    def describe(self) -> str:
        if not self.measured:
            return self.note
        gains = ", ".join(f"{f} {g.gain:+.3f} [{g.ci95[0]:+.3f}, {g.ci95[1]:+.3f}]"
                          for f, g in self.per_field.items())
        return f"Recall@10 rules {self.rules_recall:.3f} on {self.cases} dev cases; gain per field: {gains}"


class Calibration(BaseModel):
    key: Key
    prompts: str = Field(description="the template set measured (name or folder)")
    ranking: Ranking
    reasons: Reasons
    reading: Reading = Reading()
    command: str
    measured_by: dict[str, str] = Field({}, description="role -> the command that measured it (a run with "
                                        "--roles keeps the others' measurements, and says whose)")
    seconds: float
    created: str

    def summary(self) -> list[tuple[str, str, str]]:
        """(role, measured value, routed to) for each role."""
        r, s = self.ranking, self.reasons
        interval = f" [{r.gain_ci95[0]:+.4f}, {r.gain_ci95[1]:+.4f}]" if r.gain_ci95 else ""
        return [
            ("ranking", f"fusion weight {r.weight:g} ({r.method}, {r.users} validation users, NDCG@10 gain "
                        f"{r.gain:+.4f}{interval})", f"model (fused, weight {r.routed_weight:g})"
             if r.routed_weight > 0 else "retrieval: no ranking call"),
            ("reasons", f"{s.accepted}/{s.asked} grounded ({100 * s.rate:.0f}%), {s.informative}/{s.asked} "
                        f"informative too ({100 * s.informative_rate:.0f}%), {s.users} users",
             "model" if s.routed else f"evidence template (below {100 * REASONS_MIN:.0f}% grounded or "
                                      f"{100 * INFORMATIVE_MIN:.0f}% informative)"),
            ("reading", self.reading.describe(),
             f"rules + model ({', '.join(self.reading.fields)})" if self.reading.fields else "rules only"),
        ]


@dataclass(frozen=True)
class InForce:
    """The calibration that applies to a (catalog, backend, model, templates), and how well it matches."""

    calibration: Calibration | None
    state: Literal["local", "shipped", "stale", "none"]
    path: Path | None = None
    elsewhere: tuple[Calibration, ...] = ()  # with none of its own: the model's shipped calibrations

    def describe(self) -> str:
        cal = self.calibration
        if cal is None and self.elsewhere:
            catalogs = ", ".join(sorted({c.key.catalog for c in self.elsewhere}))
            key = self.elsewhere[0].key
            return (f"uncalibrated on this catalog: routed as {key.backend}:{key.model} was measured on the "
                    f"shipped catalogs ({catalogs}); run `genre-agent calibrate` to measure it here")
        if cal is None:
            return ("uncalibrated: every role is asked (a model not measured on any catalog); run `genre-agent "
                    "calibrate` to measure them")
        where = "shipped" if self.path and self.path.parent == SHIPPED else "local"
        text = (f"{where} calibration of {cal.key.backend}:{cal.key.model} on {cal.key.catalog} "
                f"({cal.created[:10]})")
        if self.state == "stale":
            text += (" — stale: the templates changed since; run `genre-agent calibrate` (its routing is used "
                     "until then)")
        return text


def _read(path: Path) -> Calibration | None:
    try:
        return Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def local_dir(data_dir: Path) -> Path:
    return data_dir / "calibration"


def find(data_dir: Path, key: Key) -> InForce:
    """The local calibration of exactly this key, else the shipped one, else the newest one of the same
    catalog, backend and model with other templates (stale), else none."""
    for folder, state in ((local_dir(data_dir), "local"), (SHIPPED, "shipped")):
        path = folder / key.filename()
        cal = _read(path) if path.is_file() else None
        if cal is not None and cal.key == key:
            return InForce(cal, state, path)  # type: ignore[arg-type]
    others = [(cal, path) for folder in (local_dir(data_dir), SHIPPED) if folder.is_dir()
              for path in sorted(folder.glob("*.json")) if (cal := _read(path)) is not None
              and cal.key.same_model(key)]
    if others:
        cal, path = max(others, key=lambda cp: cp[0].created)
        return InForce(cal, "stale", path)
    shipped = [cal for path in sorted(SHIPPED.glob("*.json")) if (cal := _read(path)) is not None
               and (cal.key.backend, cal.key.model) == (key.backend, key.model)]
    return InForce(None, "none", elsewhere=tuple(shipped))


def save(calibration: Calibration, data_dir: Path) -> Path:
    folder = local_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / calibration.key.filename()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
