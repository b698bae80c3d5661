"""Write an evaluation report as report.json, report.md (tables) and report.png (NDCG@10 / HR@10 with CIs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def git_commit() -> str:
    """The commit of the code that measured (stored in every report), or "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

LLM_COLUMNS = ("json_valid_pct", "reask_pct", "fallback_pct", "hallucinated_id_pct", "mean_prompt_tokens",
               "mean_completion_tokens", "latency_p50_s", "latency_p95_s", "permutations", "weight_llm")


def markdown(report: dict[str, Any]) -> str:
    ks = report["config"]["ks"]
    k = max(ks)
    lines = [f"# Evaluation of {report['catalog']} (commit {report['commit'][:10]})", "",
             f"{report['config']['users']} users, seed {report['config']['seed']}, split {report['split']}.", ""]
    for protocol, methods in report["results"].items():
        cols = [f"NDCG@{k}", f"HR@{k}", "MRR", *(f"NDCG@{x}" for x in ks if x != k),
                *(f"HR@{x}" for x in ks if x != k), f"P@{k}", f"F1@{k}", "coverage", "diversity", "novelty",
                "seconds"]
        lines += [f"## {protocol}", "", "| method | " + " | ".join(cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for method, r in methods.items():
            cells = []
            for c in cols:
                cell = f"{r[c]:.4f}" if c != "seconds" else f"{r[c]:.1f}"
                if c in (f"NDCG@{k}", f"HR@{k}"):
                    lo, hi = r[f"{c}_ci95"]
                    cell += f" [{lo:.3f}, {hi:.3f}]"
                cells.append(cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        llm = {m: r for m, r in methods.items() if "latency_p50_s" in r}
        if llm:
            lines += ["", "| LLM method | " + " | ".join(LLM_COLUMNS) + " |", "|---|" + "---:|" * len(LLM_COLUMNS)]
            for method, r in llm.items():
                llm_cells = (f"{r[c]:.2f}" if c in r else "–" for c in LLM_COLUMNS)
                lines.append(f"| {method} | " + " | ".join(llm_cells) + " |")
        lines.append("")
        for method, r in methods.items():
            for base in ("hybrid", "ease", "als"):
                if f"vs_{base}" in r:
                    diff = r[f"vs_{base}"]
                    lo, hi = diff["ci95"]
                    r_lo, r_hi = diff["ratio_ci95"]
                    lines.append(f"- {method} − {base}, paired per user: NDCG@{k} "
                                 f"{diff[f'NDCG@{k}_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]; ratio "
                                 f"{diff['ratio']:.3f}× [{r_lo:.3f}, {r_hi:.3f}]")
        lines.append("")
    if report.get("llm_adapter"):
        lines += [f"- LoRA adapter of the LLM methods: {report['llm_adapter']}"]
    lines += [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(report["config"]["ks"])
    protocols = list(report["results"])
    fig, axes = plt.subplots(len(protocols), 2, figsize=(11, 3.2 * len(protocols)), squeeze=False)
    for row, protocol in enumerate(protocols):
        methods = report["results"][protocol]
        for col, metric in enumerate((f"NDCG@{k}", f"HR@{k}")):
            ax = axes[row][col]
            names = list(methods)
            values = [methods[m][metric] for m in names]
            errors = [[v - methods[m][f"{metric}_ci95"][0] for m, v in zip(names, values, strict=True)],
                      [methods[m][f"{metric}_ci95"][1] - v for m, v in zip(names, values, strict=True)]]
            ax.bar(names, values, yerr=errors, capsize=3, color="#4c72b0")
            ax.set_title(f"{protocol}: {metric} (95% bootstrap CI)")
            ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_texts(out: Path, files: dict[str, str]) -> None:
    """Write text files into `out`, each appearing only when complete (written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def write(report: dict[str, Any], out: Path) -> None:
    """Write all three files; each appears only when complete (written aside, then renamed)."""
    write_texts(out, {"report.json": json.dumps(report, indent=2), "report.md": markdown(report)})
    tmp_png = out / ".report.tmp.png"
    plot(report, tmp_png)
    tmp_png.replace(out / "report.png")
