"""Collect real QLoRA trials into a JSON Lines file: the data of a surrogate benchmark.

Why: comparing tuners on real fine-tunes costs ~25 s a trial; a surrogate fitted on a
fixed set of real trials (as YAHPO Gym and LCBench do) answers in microseconds. The
trials are space-filling (scrambled Sobol points over the run config's search space)
and each one is fully determined by its index (config and training seed), so a killed
collection resumes to exactly what an uninterrupted one would have written, and
machines can share the work by index ranges (``--start/--stop``).

    python experiments/collect_qlora_trials.py [--config experiments/smollm2_pydoc.yaml]
        [--target 500] [--start I] [--stop J] [--data-file PATH] [--eval-every 2]
        [--sample-seed 0] [--threads N] [--model PATH] [--quick]

Format (JSON Lines; appended, flushed and fsynced as each trial ends):

* line 1, ``{"kind": "header", "format": 1, "collection": KEY, ...}``: the fitness
  fingerprint and section, budget, search space, fixed values, sampler and
  ``eval_every`` that produced every trial of the file. KEY hashes what makes trials
  comparable; the command refuses (exit 2) to extend a file with another KEY.
* then one ``{"kind": "trial", "collection": KEY, "index": i, ...}`` per finished trial,
  in order of completion: ``seed``, ``genome`` (the sampled genes), ``config`` (as the
  fitness applied it, fixed values included), ``status`` (complete | failed),
  ``reason`` (null | exception | diverged | oom | timeout | killed), ``message``,
  ``val_perplexity`` (final; null when failed), ``train_loss_curve`` ([[step, loss], ...]),
  ``val_perplexity_curve`` ([[step, ppl], ...], every ``eval_every`` steps and at the
  end), ``train_tokens``, ``wall_seconds``, ``train_tokens_per_s``, ``peak_memory_mb``,
  ``fingerprint`` (the fitness's), ``budget``, ``machine`` (host, CPUs, threads, device,
  library versions) and ``metrics`` (everything else the fitness reported).

Reading it::

    rows = [json.loads(line) for line in open(path)]
    header, trials = rows[0], rows[1:]

Sampling: point i of ``scipy.stats.qmc.Sobol(d, scramble=True, seed=sample_seed)`` maps
gene by gene through ``gene.from_share`` (a discrete gene's n values spread evenly over
[0, 1); ``from_unit`` alone gives the two end values half the share of the others). Training seed of trial i: ``SeedSequence(sample_seed, spawn_key=(i,))``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evo import SearchSpace  # noqa: E402
from evo.trial import Budget, ConfigError, Trial, TrialResult  # noqa: E402

FORMAT = 1
DEFAULT_CONFIG = ROOT / "experiments" / "smollm2_pydoc.yaml"
DATA_DIR = ROOT / "experiments" / "data"
# --quick: a trial in well under a second on a tiny model (the test's)
QUICK_FITNESS = {"validation_tokens": 256, "eval_seq_length": 64, "device": "cpu", "trial_timeout": 120}
QUICK_BUDGET = {"steps": 4}
TOP_LEVEL_METRICS = (
    "train_loss_curve",
    "val_perplexity_curve",
    "train_tokens",
    "wall_seconds",
    "train_tokens_per_s",
    "peak_memory_mb",
)


class Stop(Exception):
    """SIGTERM or SIGINT arrived: end the collection, dropping the trial in flight."""


# -- options and plan ------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run config: space, fixed, budget, fitness")
    p.add_argument(
        "--data-file", type=Path, help="the JSONL to extend (default experiments/data/<config>_trials.jsonl)"
    )
    p.add_argument("--target", type=int, default=500, help="collect indices up to this one (exclusive)")
    p.add_argument("--start", type=int, default=0, help="first index of this machine's range")
    p.add_argument("--stop", type=int, help="end of this machine's range (default --target)")
    p.add_argument("--eval-every", type=int, default=2, help="optimizer steps between validation points")
    p.add_argument("--sample-seed", type=int, default=0, help="Sobol scrambling and training seeds")
    p.add_argument("--threads", type=int, help="set OMP/MKL_NUM_THREADS for the training worker")
    p.add_argument("--model", help="override fitness.model (a local directory or .gguf file)")
    p.add_argument("--quick", action="store_true", help="tiny budget and validation set, CPU (for tests)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    """What the collection evaluates: every trial is ``trial(i)``."""

    space: SearchSpace
    fixed: dict[str, Any]
    budget: Budget
    fitness_spec: dict[str, Any]
    sample_seed: int
    eval_every: int

    def genome(self, index: int) -> dict[str, Any]:
        u = sobol_points(len(self.space), self.sample_seed, index + 1)[index]
        return {gene.name: gene.from_share(x) for gene, x in zip(self.space, u)}

    def seed(self, index: int) -> int:
        return int(np.random.SeedSequence(self.sample_seed, spawn_key=(index,)).generate_state(1)[0])

    def trial(self, index: int, genome: dict[str, Any]) -> Trial:
        return Trial(trial_id=index, config={**self.fixed, **genome}, budget=self.budget, seed=self.seed(index))

    def identity(self, fingerprint: str) -> dict[str, Any]:
        """Everything that makes two trials of the same index comparable."""
        return {
            "fitness_fingerprint": fingerprint,
            "eval_every": self.eval_every,
            "budget": self.budget.as_dict(),
            "search_space": self.space.to_spec(),
            "fixed": self.fixed,
            "sampler": {
                "kind": "sobol",
                "scramble": True,
                "seed": self.sample_seed,
                "discrete": "equal-share",
                "training_seed": "SeedSequence(seed, spawn_key=(index,))",
            },
        }


def load_plan(options: argparse.Namespace) -> Plan:
    try:
        config = yaml.safe_load(Path(options.config).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config: {exc}".splitlines()[0]) from None
    if not isinstance(config, dict) or "search_space" not in config or "fitness" not in config:
        raise ConfigError(f"--config: {options.config} needs search_space and fitness sections")
    fitness_spec = {**config["fitness"], "eval_every": options.eval_every}
    budget = config.get("budget") or {}
    if options.quick:
        fitness_spec.update(QUICK_FITNESS)
        budget = QUICK_BUDGET
    if options.model:
        fitness_spec["model"] = options.model
    return Plan(
        SearchSpace.from_spec(config["search_space"]),
        dict(config.get("fixed") or {}),
        Budget(**budget),
        fitness_spec,
        options.sample_seed,
        options.eval_every,
    )


def sobol_points(d: int, seed: int, n: int) -> np.ndarray:
    """The first >= n scrambled Sobol points (a power of 2; every prefix is the same for a seed)."""
    from scipy.stats import qmc

    return qmc.Sobol(d=d, scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(max(n, 1)))))


# -- the data file ---------------------------------------------------------------------
def header_for(plan: Plan, fitness) -> dict[str, Any]:
    identity = plan.identity(fitness.fingerprint())
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    import scipy

    return {
        "kind": "header",
        "format": FORMAT,
        "collection": key,
        **identity,
        "fitness": plan.fitness_spec,
        "scipy": scipy.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def open_data_file(path: Path, header: dict[str, Any]) -> set[int]:
    """Indices already collected; writes the header into a new file, drops a partial last line."""
    rows, good_bytes = read_rows(path)
    if not rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(json_line(header))
            _sync(f)
        return set()
    first = rows[0]
    if first.get("kind") != "header" or first.get("collection") != header["collection"]:
        raise ConfigError(
            f"{path}: collected under another config (collection {first.get('collection')!r}, "
            f"this one is {header['collection']!r}); use another --data-file"
        )
    if good_bytes < path.stat().st_size:
        os.truncate(path, good_bytes)  # the line a kill cut short: its trial runs again
    return {row["index"] for row in rows[1:] if row.get("kind") == "trial"}


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of ``path`` and their byte length; a broken line before the last is an error."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, good = [], 0
    complete = lines[:-1]  # lines[-1] is b"" or a line a kill cut short (no newline)
    for n, line in enumerate(complete, 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if n < len(complete):  # only the last line can be a torn write
                raise ConfigError(f"{path}:{n}: not a JSON line; fix or move the file") from None
        else:
            good += len(line) + 1
    return rows, good


def append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "ab") as f:
        f.write(json_line(record))
        _sync(f)


def json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(_finite(record), allow_nan=False) + "\n").encode()


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


# -- one trial ---------------------------------------------------------------------------
def record_for(
    index: int, genome: dict[str, Any], trial: Trial, result: TrialResult, *, header, machine, elapsed: float
) -> dict[str, Any]:
    metrics = dict(result.metrics)
    top = {name: metrics.pop(name, None) for name in TOP_LEVEL_METRICS}
    if top["wall_seconds"] is None:  # timeout, killed worker: the fitness could not measure it
        top["wall_seconds"] = elapsed
    return {
        "kind": "trial",
        "collection": header["collection"],
        "index": index,
        "seed": trial.seed,
        "genome": genome,
        "config": dict(result.applied_config or trial.config),
        "status": result.status.value,
        "reason": result.reason.value if result.reason else None,
        "message": result.message,
        "val_perplexity": result.values.get("val_perplexity"),
        **top,
        "fingerprint": header["fitness_fingerprint"],
        "budget": trial.budget.as_dict(),
        "machine": machine,
        "elapsed_seconds": elapsed,
        "metrics": metrics,
    }


def machine_info(fitness) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    info.update(fitness.describe())  # device, torch, transformers, peft, bitsandbytes versions
    return info


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


# -- the loop ------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, Any]]:
    """SIGTERM/SIGINT raise Stop, except while a line is written (then the loop stops after it)."""
    state: dict[str, Any] = {"signal": None, "writing": False}

    def handler(signum, frame):
        state["signal"] = signal.Signals(signum).name
        if not state["writing"]:
            raise Stop(state["signal"])

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def collect(plan: Plan, fitness, path: Path, todo: list[int], header: dict[str, Any]) -> int:
    """Evaluate and append ``todo`` in order; returns how many were written."""
    machine = machine_info(fitness)
    durations: list[float] = []
    with stop_on_signals() as state:
        try:
            for k, index in enumerate(todo):
                genome = plan.genome(index)
                trial = plan.trial(index, genome)
                tick = time.perf_counter()
                result = fitness.evaluate(trial)
                elapsed = time.perf_counter() - tick
                if state["signal"]:  # the worker may have died of the same Ctrl-C: not data
                    raise Stop(state["signal"])
                record = record_for(index, genome, trial, result, header=header, machine=machine, elapsed=elapsed)
                state["writing"] = True
                append(path, record)
                state["writing"] = False
                durations.append(elapsed)
                print(progress_line(record, k + 1, len(todo), durations), flush=True)
                if state["signal"]:
                    raise Stop(state["signal"])
        except Stop as stop:
            kill_worker(fitness)
            print(f"stopped by {stop}: {len(durations)} trials written this session", flush=True)
    return len(durations)


def kill_worker(fitness) -> None:
    """A worker busy with a trial would read close()'s stop message only after it."""
    pid = getattr(fitness, "worker_pid", None)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def progress_line(record: dict[str, Any], done: int, total: int, durations: list[float]) -> str:
    ppl = record["val_perplexity"]
    outcome = f"val_ppl {ppl:8.3f}" if ppl is not None else f"{record['status']} ({record['reason']})"
    eta = sum(durations) / len(durations) * (total - done)
    return (
        f"trial {record['index']:4d}  {outcome:<20}  {durations[-1]:6.1f} s  "
        f"[{done}/{total}]  ETA {eta / 3600:.0f}h{eta % 3600 / 60:02.0f}m"
    )


def main(argv: list[str] | None = None, fitness=None) -> int:
    """Run the command; ``fitness`` replaces the one the config describes (the caller closes it)."""
    options = parse_args(argv)
    if options.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(options.threads)  # inherited by the spawned training worker
    path = options.data_file or DATA_DIR / f"{Path(options.config).stem}_trials.jsonl"
    stop = options.target if options.stop is None else min(options.stop, options.target)
    own = fitness is None
    try:
        plan = load_plan(options)
        if own:
            from fitness import make_fitness

            fitness = make_fitness(plan.fitness_spec)
        header = header_for(plan, fitness)
        done = open_data_file(path, header)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = [i for i in range(options.start, stop) if i not in done]
    print(
        f"{path}: collection {header['collection']}, indices {options.start}..{stop - 1}: "
        f"{len(done)} in the file, {len(todo)} to go",
        flush=True,
    )
    try:
        collect(plan, fitness, path, todo, header)
    finally:
        if own:
            fitness.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
