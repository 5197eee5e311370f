"""The cohort step's tables and verdict, from what it recorded (also from a step killed midway).

Makespan: the wall time to train and score the K trials. One after another it is the
sum of each trial's wall time; as a cohort, the one ``run_cohort`` call. Training tokens/s:
the K trials' training tokens over their training time (a cohort's members share theirs,
so its time is the longest member's). Peak memory: the most allocated on the device (the
process's peak RSS on a CPU) during a trial or a cohort, the base included.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from evobench.gpu_check.record import StepStatus

GOAL, MINIMUM, GOAL_K = 8.0, 5.0, 16  # the cohort's speed-up at K = 16 the GPU results are judged by
FLOAT32_TOLERANCE = 1e-5  # relative, cohort against alone (docs/cohorts.md)


def _tok_s(rows: list[dict[str, Any]], together: bool) -> float:
    tokens = sum(r["train_tokens"] for r in rows)
    seconds = [r["train_seconds"] for r in rows]
    spent = max(seconds) if together else sum(seconds)
    return tokens / spent if spent > 0 else math.nan


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["peak_memory_mb"] or 0.0) for r in rows) if rows else math.nan


def ppl_differences(alone: list[dict[str, Any]], cohort: list[dict[str, Any]]) -> list[float]:
    """|cohort / alone - 1| of each trial that completed both ways."""
    return [
        abs(c["val_perplexity"] / a["val_perplexity"] - 1)
        for a, c in zip(alone, cohort)
        if a["status"] == c["status"] == "complete" and a["val_perplexity"] and c["val_perplexity"]
    ]


def rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cohort size measured: the three makespans, speed-ups, tokens/s, peaks, ppl difference."""
    alone, trainer, out = details.get("alone", []), details.get("trainer", []), []
    for key, cohort in sorted(details.get("cohorts", {}).items(), key=lambda kv: int(kv[0])):
        k = int(key)
        ours = sum(a["wall_seconds"] for a in alone[:k])
        theirs = sum(t["wall_seconds"] for t in trainer[:k]) if len(trainer) >= k else None
        wall = cohort["wall_seconds"]
        diffs = ppl_differences(alone[:k], cohort["trials"])
        out.append(
            {
                "k": k,
                "ours": ours,
                "trainer": theirs,
                "cohort": wall,
                "vs_ours": ours / wall,
                "vs_trainer": theirs / wall if theirs is not None else None,
                "tok_s": (
                    _tok_s(alone[:k], False),
                    _tok_s(trainer[:k], False) if theirs else None,
                    _tok_s(cohort["trials"], True),
                ),  # fmt: skip
                "peak": (_peak(alone[:k]), _peak(trainer[:k]) if theirs else None, _peak(cohort["trials"])),
                "max_diff": max(diffs) if diffs else None,
                "same_statuses": [a["status"] for a in alone[:k]] == [c["status"] for c in cohort["trials"]],
            }
        )
    return out


NOT_REACHED = "-"  # the step's time ran out before this was measured


def _n(value: float | None, fmt: str, unit: str = "") -> str:
    return NOT_REACHED if value is None else format(value, fmt) + unit


def markdown(details: dict[str, Any]) -> list[str]:
    alone, table = details.get("alone", []), rows(details)
    dtypes = sorted({a["compute_dtype"] for a in alone if a.get("compute_dtype")})
    steps = sorted({a["budget_steps"] for a in alone if a.get("budget_steps")})
    lines = [
        f"{details.get('model', '?')}; trials drawn from experiments/smollm2_pydoc.yaml's search space "
        f"(max_seq_length 128), compute dtype {', '.join(dtypes) or '?'}, {'/'.join(map(str, steps)) or '?'} "
        "optimizer steps a trial (its token budget over the batch genes).",
        "",
        "| K | one after another: ours | one after another: Trainer | one cohort | speed-up vs ours "
        "| speed-up vs Trainer | train tok/s ours / Trainer / cohort | peak MB ours / Trainer / cohort "
        "| max rel. ppl difference, cohort vs alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        t, p = r["tok_s"], r["peak"]
        lines.append(
            f"| {r['k']} | {r['ours']:.1f} s | {_n(r['trainer'], '.1f', ' s')} | {r['cohort']:.1f} s | "
            f"{r['vs_ours']:.2f}x | {_n(r['vs_trainer'], '.2f', 'x')} | {t[0]:.0f} / {_n(t[1], '.0f')} / {t[2]:.0f} | "
            f"{p[0]:.0f} / {_n(p[1], '.0f')} / {p[2]:.0f} | {_n(r['max_diff'], '.1e')} |"
        )
    if any(r["trainer"] is None for r in table):
        lines += ["", f"{NOT_REACHED}: not measured before the step's time ran out."]
    auto = details.get("auto")
    if auto:
        sequential = sum(a["wall_seconds"] for a in alone[: auto["trials"]])
        lines += ["", f"`cohort: auto` trained the {auto['trials']} trials at most {auto['chosen']} at once: "
                  f"{auto['wall_seconds']:.1f} s (one after another: {sequential:.1f} s)."]  # fmt: skip
    cohorts = details.get("cohorts", {})
    if cohorts:
        big = max(cohorts, key=int)
        trainer = details.get("trainer", [])
        lines += ["", f"| trial | genes | status alone / cohort | ppl alone | ppl in the cohort (K={big}) | ppl Trainer |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for i, (a, c) in enumerate(zip(alone, cohorts[big]["trials"])):
            g = a["config"]
            genes = (f"lr {g['learning_rate']:.1e}, r {g['r']}, alpha {g['lora_alpha']}, dropout {g['lora_dropout']}, "
                     f"{g['target_modules']}, {g['lr_scheduler_type']}, batch {g['per_device_train_batch_size']}")  # fmt: skip
            theirs = _n(trainer[i]["val_perplexity"], ".2f") if i < len(trainer) else NOT_REACHED
            lines.append(f"| {i} | {genes} | {a['status']} / {c['status']} | {_n(a['val_perplexity'], '.2f')} | "
                         f"{_n(c['val_perplexity'], '.2f')} | {theirs} |")  # fmt: skip
    return lines


def verdict(details: dict[str, Any]) -> tuple[StepStatus, str]:
    """Passed when every cohort trained its trials to the same ends as alone (float32: the same numbers)."""
    table, alone = rows(details), details.get("alone", [])
    if not table or not any(a["status"] == "complete" for a in alone):
        return StepStatus.FAILED, "no trial completed"
    judged = next((r for r in table if r["k"] == GOAL_K), table[-1])
    speed = f"K={judged['k']}: {judged['cohort']:.1f} s as one cohort, speed-up {judged['vs_ours']:.2f}x over ours"
    if judged["vs_trainer"] is not None:
        speed += f", {judged['vs_trainer']:.2f}x over Trainer"
    speed += " one trial after another"
    diffs = ppl_differences(alone, details["cohorts"][str(table[-1]["k"])]["trials"])
    ppl = f"ppl cohort vs alone: median {statistics.median(diffs):.1e}, max {max(diffs):.1e}" if diffs else "no ppl"
    auto = f"auto chose {details['auto']['chosen']}" if details.get("auto") else "auto not reached"
    goal = ""
    if judged["k"] == GOAL_K:
        x = judged["vs_ours"]  # against our own loop one after another: the cohort's gain alone, and the stricter
        goal = (
            f"; goal {GOAL:g}x met"
            if x >= GOAL
            else f"; minimum {MINIMUM:g}x met"
            if x >= MINIMUM
            else "; goal not met"
        )
    summary = f"{speed}{goal}; {ppl}; {auto}"
    if not all(r["same_statuses"] for r in table):
        return StepStatus.FAILED, f"a trial ended differently in a cohort than alone; {summary}"
    float32 = {a.get("compute_dtype") for a in alone} == {"float32"}
    if float32 and diffs and max(diffs) > FLOAT32_TOLERANCE:
        return StepStatus.FAILED, f"float32 cohort differs from alone by more than {FLOAT32_TOLERANCE}; {summary}"
    return StepStatus.PASSED, summary
