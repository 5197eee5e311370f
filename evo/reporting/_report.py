"""``evo report``: one self-contained HTML page about a run (images inlined, no network)."""

from __future__ import annotations

import base64
import html
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from evo.reporting._importance import METHOD, importance
from evo.reporting._rundata import RunData, load_run
from evo.reporting.plots import NothingToPlot, plot_run
from evo.storage import BASELINE_GENERATION, check_output, write_output
from evo.trial import FitnessBase, TrialStatus

# (fitness spec, config) -> export sections; the CLI passes fitness.export_sections, as evo
# does not import fitness
ExportSections = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, dict[str, Any]]]

TOP_TRIALS = 10
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1180px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; border: 1px solid #e4e4e4; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; } .note { color: #666; }
.good { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
"""


def write_report(
    run_dir: Path | str, out: Path | str | None = None, *, export_sections: ExportSections | None = None
) -> Path:
    """Write RUN_DIR/report.html (or ``out``) and return its path.

    ``export_sections`` splits the best config as ``evo best --export`` does; without it,
    the config is one section.
    """
    run_dir = Path(run_dir)
    own = run_dir / "report.html"
    out = check_output(own if out is None else out, flag="--out", owner=run_dir, owns=("report.html",))
    data = load_run(run_dir)
    # Into the run's plots/ when the report goes into the run; a report written elsewhere
    # changes nothing in the run (which may be read-only), its figures being inlined.
    with tempfile.TemporaryDirectory(prefix="evo-report-") as scratch:
        try:
            plots = plot_run(run_dir, None if out == own else scratch, data=data)
        except NothingToPlot:
            plots = None
        figures = _plots(plots)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>evo run {_e(run_dir.name)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evolutionary run <code>{_e(run_dir.name)}</code></h1>",
        _summary(data),
        _metadata(data),
        _best(data, run_dir, export_sections),
        _top_trials(data),
        _importance(run_dir),
        _failures(data),
        figures,
        f"<h2>Run config</h2><pre>{_e(yaml.safe_dump(dict(data.config.raw), sort_keys=False))}</pre>",
        f"<p class='note'>Written {time.strftime('%Y-%m-%d %H:%M:%S')} by evo report.</p></body></html>",
    ]
    write_output(out, "\n".join(parts))
    return out


def _e(text: Any) -> str:
    return html.escape(str(text))


def _fmt(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else _e(value)


def _best_trial(data: RunData):
    ok = [t for t in data.trials if data.scored(t) and t.generation > BASELINE_GENERATION]
    if not ok:
        return None
    return min(ok, key=data.scored_value) if data.minimize else max(ok, key=data.scored_value)


def _summary(data: RunData) -> str:
    best = _best_trial(data)
    name = data.objective.name
    planned = data.config.evolution.planned_generations + 1
    failed = sum(1 for t in data.trials if t.status is TrialStatus.FAILED)
    pruned = sum(1 for t in data.trials if t.status is TrialStatus.PRUNED)
    partial = sum(1 for t in data.trials if t.ok and not t.full)
    extra = (f", {pruned} stopped early" if pruned else "") + (f", {partial} on part of the budget" if partial else "")
    lines = [
        f"<p>{len(data.stats)} of {planned} generations finished, {len(data.trials)} trials run"
        f" ({failed} failed{extra}).</p>"
    ]
    if best is None:
        lines.append("<p class='bad'>No trial of the search completed: there is no best config.</p>")
        return "\n".join(lines)
    text = f"Best {_e(name)}: <b>{_fmt(data.value(best))}</b> (trial {best.id}, generation {best.generation})"
    if data.baseline is not None and data.baseline.ok:
        base, value = data.scored_value(data.baseline), data.scored_value(best)
        gain = (base - value) / base * 100 if data.minimize else (value - base) / abs(base) * 100
        css = "good" if gain > 0 else "bad"
        text += (
            f"; untuned baseline: {_fmt(base)} "
            f"(<span class='{css}'>{gain:+.1f}% {'better' if gain > 0 else 'worse'}</span>)"
        )
    elif data.baseline is not None:
        text += f"; the untuned baseline failed ({_e(data.baseline.reason.value if data.baseline.reason else '')})"
    lines.append(f"<p>{text}.</p>")
    return "\n".join(lines)


def _metadata(data: RunData) -> str:
    starts = [t.started_at for t in data.trials]
    ends = [t.finished_at for t in data.trials if t.finished_at]
    env = data.meta.get("environment") or {}
    rows = {
        "run directory": str(data.run_dir.resolve()),
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.meta["created_at"]))
        if data.meta.get("created_at")
        else "-",
        "duration (first trial start to last trial end)": _duration(max(ends) - min(starts)) if ends else "-",
        "seed": data.config.seed,
        "strategy": data.config.evolution.strategy.value,
        "objectives": ", ".join(f"{o.name} ({o.direction.value})" for o in data.objectives),
        "fitness": data.config.fitness.get("type"),
        "budget": ", ".join(f"{k} {v}" for k, v in data.config.budget.as_dict().items() if v) or "-",
        "fitness fingerprint": data.meta.get("fingerprint"),
        "warm-started from": data.meta.get("warm_started_from") or "-",
        "python": env.get("python", platform.python_version()),
        **{k: v for k, v in env.items() if k != "python"},
    }
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows.items())
    return f"<h2>Run</h2><table>{body}</table>"


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.1f} s"
        if seconds < 120
        else f"{seconds / 60:.1f} min"
        if seconds < 7200
        else f"{seconds / 3600:.2f} h"
    )


def _best(data: RunData, run_dir: Path, export_sections: ExportSections | None) -> str:
    best = _best_trial(data)
    if best is None:
        return ""
    config = best.applied_config or best.config
    sections = export_sections(data.config.fitness, config) if export_sections else FitnessBase.export_sections(config)
    document: dict[str, Any] = {"objectives": dict(best.values), **sections}
    artifacts = data.meta.get("best_artifacts")
    if artifacts and artifacts.get("trial_id") == best.id:
        document["adapter_path"] = str(Path(artifacts["path"]) / "adapter")
    return (
        "<h2>Best configuration</h2><p class='note'>Ready to paste; the sections load into "
        "TrainingArguments, LoraConfig and BitsAndBytesConfig.</p>"
        f"<pre>{_e(yaml.safe_dump(document, sort_keys=False))}</pre>"
    )


def _top_trials(data: RunData) -> str:
    ok = sorted(
        (t for t in data.trials if data.scored(t) and t.generation > BASELINE_GENERATION),
        key=data.scored_value,
        reverse=not data.minimize,
    )
    if not ok:
        return ""
    genes = data.config.space.names
    head = "".join(f"<th>{_e(h)}</th>" for h in ["trial", "gen", *[o.name for o in data.objectives], *genes])
    rows = []
    for t in ok[:TOP_TRIALS]:
        cells = [
            t.id,
            t.generation,
            *[t.values.get(o.name) for o in data.objectives],
            *[t.config.get(g) for g in genes],
        ]
        rows.append(
            "<tr>"
            + "".join(
                f"<td class='num'>{_fmt(c)}</td>"
                if isinstance(c, (int, float)) and not isinstance(c, bool)
                else f"<td>{_e(c)}</td>"
                for c in cells
            )
            + "</tr>"
        )
    return (
        f"<h2>Top {min(TOP_TRIALS, len(ok))} trials</h2>"
        f"<div style='overflow-x:auto'><table><tr>{head}</tr>{''.join(rows)}</table></div>"
    )


def _importance(run_dir: Path) -> str:
    """Which genes mattered (evo.reporting._importance), and which the next run could fix."""
    found = importance(run_dir)
    if not found.scores:
        return f"<h2>What mattered</h2><p class='note'>Hyperparameter importance: {_e(found.note)}.</p>"
    rows = "".join(
        f"<tr><td>{_e(n)}</td><td class='num'>{v:.3f}</td><td>{'&#9608;' * round(v * 40)}</td></tr>"
        for n, v in found.scores.items()
    )
    head = f"<p>{METHOD} importance for {_e(found.objective)} over {found.trials} whole-budget trials (sums to 1).</p>"
    note = f"<p class='note'>{_e(found.note)}.</p>" if found.note else ""
    fix = ""
    if found.fixable:
        fix = f"<p>Could be fixed at the best trial's value in the next run:</p><pre>{_e(found.fixed_yaml())}</pre>"
    return f"<h2>What mattered</h2>{head}{note}<table><tr><th>gene</th><th>importance</th><th></th></tr>{rows}</table>{fix}"


def _failures(data: RunData) -> str:
    failed = [t for t in data.trials if t.status is TrialStatus.FAILED]
    if not failed:
        return "<h2>Failures</h2><p>No trial failed.</p>"
    counts = Counter(t.reason.value if t.reason else t.status.value for t in failed)
    table = "".join(f"<tr><td>{_e(r)}</td><td class='num'>{n}</td></tr>" for r, n in counts.most_common())
    examples: dict[str, str] = {}
    for t in failed:
        examples.setdefault(t.message[:200], f"trial {t.id} ({t.reason.value if t.reason else t.status.value})")
    listing = "".join(f"<li>{_e(where)}: <code>{_e(msg)}</code></li>" for msg, where in list(examples.items())[:8])
    return (
        f"<h2>Failures</h2><table><tr><th>reason</th><th>trials</th></tr>{table}</table>"
        f"<p>Distinct messages (first {min(8, len(examples))}):</p><ul>{listing}</ul>"
    )


def _plots(plots) -> str:
    if plots is None:
        return "<h2>Plots</h2><p>Nothing to plot yet.</p>"
    parts = ["<h2>Plots</h2>"]
    for name, path in plots.written.items():
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            f"<h3>{_e(name.replace('_', ' '))}</h3><img alt='{_e(name)}' src='data:image/png;base64,{encoded}'>"
        )
    for name, reason in plots.skipped.items():
        parts.append(f"<p class='note'>{_e(name.replace('_', ' '))}: not drawn, {_e(reason)}.</p>")
    return "\n".join(parts)
