"""The benchmark grid: cells, their cache, the executors that train them, and the summaries.

A bench file names one or more base configs and **axes**, config keys in ``--set``'s
dotted syntax with the values to try::

    base: configs/tasks/sort.yaml          # or a list of config files
    axes:
      model.pos_encoding: [learned, rope]
      task.params.length: [6, 8]
    seeds: [0, 1, 2]
    set: [train.max_seconds=60]            # overrides applied to every cell

A **cell** is one (base, axis values, seed): an ordinary training run. ``load_bench``
reads and checks the file; ``expand`` builds and validates every cell's Config before
anything trains (a typo fails at once). Each cell is named by a hash of everything that
decides its result -- the resolved config, the training code, the torch version -- and
trains into its own run directory ``OUT/cells/<hash>/``, where ``result.json`` (written
atomically, last) records the outcome. ``run_cells`` skips cells whose result.json says
``ok``, so re-running a grid trains only what is missing: cells never started, cells cut
off by a kill, and cells that failed (failures are retried).

``run_cell`` is the worker: a top-level function that spawned processes and Ray import
by name. It never raises for a failing run (an exception, a UserError, a NaN loss): the
failure is its result. Executors: in-process (one worker), a local process pool, Ray.

``summarise`` and ``length_points`` turn the rows into what results.md and the figures
show. This module prints and draws nothing (``gptdecoder/commands/bench.py`` does).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import statistics
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
import yaml

from gptdecoder.config import (Config, apply_override, build_section, config_from_dict, read_yaml_mapping,
                               resolve_task)
from gptdecoder.errors import UserError
from gptdecoder.storage import write_atomic
from gptdecoder.train import train_from_config

CELL_FORMAT = 1  # part of every cell's hash: bump it when a cell's result means something new
RESULT_FILE = "result.json"
EXECUTORS = ("pool", "ray")
# the modules a training run's numbers come from (globs under gptdecoder/), hashed into every cell's key
TRAINING_CODE = ("model.py", "hooks.py", "config.py", "runtime.py", "train.py", "data/*.py", "tasks/*.py")


@dataclasses.dataclass
class BenchFile:
    """The schema of a bench file (every key checked, like a config section)."""

    base: Union[str, list] = "configs/tasks/sort.yaml"  # a config file, or a list of them
    # dotted config key -> list of values, or a mapping of names to values ({rope: {...}}):
    # named values label the rows, the columns and the plots by their names
    axes: dict = dataclasses.field(default_factory=dict)
    seeds: list = dataclasses.field(default_factory=lambda: [0])  # train.seed of each cell
    set: list = dataclasses.field(default_factory=list)  # KEY=VALUE overrides applied to every cell
    out: Optional[str] = None  # output directory (None: runs/<bench file stem>)


@dataclasses.dataclass
class Bench:
    """A checked bench file: base config paths (as written and as found), axes, seeds, overrides."""

    path: str
    bases: list[str]
    base_files: list[Path]
    axes: dict[str, list]
    seeds: list[int]
    overrides: list[str]
    out: str
    names: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # axis key -> its values' names, if named


@dataclasses.dataclass
class Cell:
    """One run of the grid: its coordinates, its validated config and its cache key."""

    base: str  # the base config as the bench file names it
    values: dict  # axis key -> this cell's value (its name, for a named axis)
    seed: int
    config: Config  # validated; output.dir is the cell's run directory
    key: str  # hash of everything that decides the result
    dir: Path  # OUT/cells/<key>

    def describe(self) -> str:
        return describe(self.base, self.values, self.seed)


def describe(base: str, values: dict, seed: int) -> str:
    """A cell in one line: "base=configs/tasks/sort.yaml model.d_model=32 seed=0"."""
    return " ".join([f"base={base}", *(f"{k}={_short(v)}" for k, v in values.items()), f"seed={seed}"])


# -- reading and expanding a bench file --------------------------------------------------------


def load_bench(path: Union[str, Path]) -> Bench:
    """Read and check a bench file: known keys, axes as non-empty lists, seeds as ints, base files found.

    Base config paths are taken relative to the current directory, else to the bench file's.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "bench file")
    try:
        spec = build_section(BenchFile, raw, "bench")
    except UserError as e:
        raise UserError(f"bench file {path}: {e}") from None
    bases = [spec.base] if isinstance(spec.base, str) else list(spec.base)
    if not bases or not all(isinstance(b, str) and b for b in bases):
        raise UserError(f"bench.base={spec.base!r}: expected a config file or a non-empty list of them")
    if len(set(bases)) < len(bases):
        raise UserError(f"bench.base lists a config twice: {bases}")
    base_files = [_find_base(b, path) for b in bases]
    axes, names = {}, {}
    for key, values in spec.axes.items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise UserError(f"bench.axes: {key!r} is not a dotted config key such as model.d_model")
        if isinstance(values, dict) and values:  # named values: {name: value}
            names[key.strip()] = [str(name) for name in values]
            values = list(values.values())
        if not isinstance(values, list) or not values:
            raise UserError(f"bench.axes.{key}={values!r}: expected a non-empty list of values, e.g. [32, 64], "
                            "or a mapping of names to values")
        if len({_canonical(v) for v in values}) < len(values):
            raise UserError(f"bench.axes.{key} lists a value twice: {values!r}")
        axes[key.strip()] = values
    if not spec.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec.seeds):
        raise UserError(f"bench.seeds={spec.seeds!r}: expected a non-empty list of integers, e.g. [0, 1, 2]")
    if len(set(spec.seeds)) < len(spec.seeds):
        raise UserError(f"bench.seeds lists a seed twice: {spec.seeds}")
    if not all(isinstance(s, str) for s in spec.set):
        raise UserError(f"bench.set={spec.set!r}: expected a list of KEY=VALUE strings, e.g. [train.max_seconds=60]")
    out = spec.out or str(Path("runs") / path.stem)
    return Bench(str(path), bases, base_files, axes, list(spec.seeds), list(spec.set), out, names)


def _find_base(name: str, bench_path: Path) -> Path:
    for candidate in (Path(name), bench_path.parent / name):
        if candidate.is_file():
            return candidate
    raise UserError(f"bench.base: no config file {name!r} (looked in the current directory and beside {bench_path})")


def expand(bench: Bench, extra_overrides: Sequence[str] = (), out: Optional[Union[str, Path]] = None) -> list[Cell]:
    """Every cell of the grid -- bases x product of the axes x seeds, in that order -- each
    config built and validated now; UserError (naming the cell) for the first that is not valid.

    Overrides apply in this order: the base file, every cell's defaults (one torch thread,
    no plots), the bench file's ``set``, ``extra_overrides`` (--set), the axes, the seed.
    """
    out = Path(out or bench.out)
    fixed = [*bench.overrides, *extra_overrides]
    for item in fixed:
        key = item.partition("=")[0].strip()
        if key in bench.axes or key == "train.seed":
            what = "an axis" if key in bench.axes else "set by seeds"
            raise UserError(f"override {item!r}: {key} is {what}; change it there, not in set/--set")
    cells = []
    keys = list(bench.axes)
    for base, base_file in zip(bench.bases, bench.base_files):
        raw = read_yaml_mapping(base_file, "config", "a mapping of sections")
        if not raw:
            raise UserError(f"{base_file} is empty: expected sections such as model, task, train")
        for combo in itertools.product(*(range(len(bench.axes[k])) for k in keys)):
            settings = {k: bench.axes[k][i] for k, i in zip(keys, combo)}  # what the config gets
            values = {k: bench.names[k][i] if k in bench.names else settings[k] for k, i in zip(keys, combo)}
            for seed in bench.seeds:
                cell_raw = copy.deepcopy(raw)
                where = f"bench {bench.path}, cell {describe(base, values, seed)}"
                try:
                    for item in ("train.num_threads=1", "output.plots=false", *fixed):
                        apply_override(cell_raw, item)
                    for key, value in settings.items():
                        set_key(cell_raw, key, value)
                    set_key(cell_raw, "train.seed", seed)
                    config = config_from_dict(cell_raw)
                except UserError as e:
                    raise UserError(f"{where}: {e}") from None
                key = cell_key(config)
                cell_dir = out / "cells" / key
                config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=str(cell_dir)))
                cells.append(Cell(base, values, seed, config, key, cell_dir))
    return cells


def set_key(raw: dict, key: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for the dotted key ``a.b.c``: the value written as YAML and
    applied by ``apply_override``, exactly as ``--set a.b.c=VALUE`` would."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    apply_override(raw, f"{key}={text.removesuffix('...').strip()}")


def cell_key(config: Config) -> str:
    """The cache key: a hash of the resolved config (output.dir left out: it is named by
    the key), the training code (``code_fingerprint``), the torch version and CELL_FORMAT."""
    if not config.is_text:
        config = resolve_task(config)  # vocab_size and block_size as the run will have them
    described = config.to_dict()
    described["output"] = {k: v for k, v in described["output"].items() if k != "dir"}
    payload = {"config": described, "code": code_fingerprint(), "torch": torch.__version__,
               "cell_format": CELL_FORMAT}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """A hash of the source a cell's result depends on (TRAINING_CODE): editing the model,
    the tasks, the data or the training loop makes every cell new, so a grid never mixes
    results of two versions of the code."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for pattern in TRAINING_CODE:
        for path in sorted(package.glob(pattern)):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# -- running cells ----------------------------------------------------------------------------


def run_cell(cell: Cell) -> dict:
    """Train one cell into its run directory and write its result.json; returns that record.

    Importable by name (spawned pool processes, Ray workers). A failing run -- any
    exception, a UserError, a loss that is not finite -- is returned (and written) as
    ``status: failed`` with a one-line ``error``; only KeyboardInterrupt and the like propagate.
    """
    record: dict = {"key": cell.key, "base": cell.base, "values": cell.values, "seed": cell.seed}
    try:
        results = train_from_config(cell.config, progress=False, verbose=False)
        loss = results.get("final_loss")
        if loss is None or not math.isfinite(loss):
            record.update(status="failed", error=f"loss is {loss} after {results.get('iters')} iters",
                          results=_compact(results))
        else:
            record.update(status="ok", error="", results=_compact(results))
    except Exception as e:  # noqa: BLE001 -- any failure is this cell's result, and the grid goes on
        message = " ".join(str(e).split())
        if not isinstance(e, UserError):
            message = f"{type(e).__name__}: {message}"
        record.update(status="failed", error=message[:500], results={})
    write_record(cell, record)
    return record


def write_record(cell: Cell, record: dict) -> None:
    write_atomic(cell.dir / RESULT_FILE, json.dumps(record, indent=2, default=str) + "\n")


def cached_record(cell: Cell) -> Optional[dict]:
    """The finished result of a cell, or None when it must (still, or again) be trained:
    no result.json, an unreadable one, another key's, or a failed run."""
    try:
        record = json.loads((cell.dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != cell.key or record.get("status") != "ok":
        return None
    return record


def _compact(results: dict) -> dict:
    """What the grid keeps of a run's results.json (the whole file stays in the run directory)."""
    by_length, train_max = length_results(results)
    return {
        "test_accuracy": results.get("test_accuracy"),
        "train_accuracy": results.get("train_accuracy"),
        "accuracy_by_length": {str(n): a for n, a in by_length.items()},
        "train_max_length": train_max,
        "train_seconds": results.get("train_seconds"),
        "params": results.get("params"),
        "iters": results.get("iters"),
        "final_loss": results.get("final_loss"),
    }


def length_results(results: dict) -> tuple[dict[int, float], Optional[int]]:
    """({test length: exact match}, longest training length) from a task run's results.json.

    Reads ``accuracy_by_length`` / ``train_max_length`` where the run has them. Runs
    written before those fields existed have ``length_generalization`` (the lengths
    beyond training only) and ``task_params["length"]``: then the training length's
    entry is the held-out ``test_accuracy`` (over all training lengths when they vary).
    """
    if "accuracy_by_length" in results:
        by_length = {int(n): float(a) for n, a in (results["accuracy_by_length"] or {}).items()}
        train_max = results.get("train_max_length")
    else:
        by_length = {int(n): float(a) for n, a in (results.get("length_generalization") or {}).items()}
        train_max = (results.get("task_params") or {}).get("length")
        if isinstance(train_max, int) and results.get("test_accuracy") is not None:
            by_length.setdefault(train_max, float(results["test_accuracy"]))
    return dict(sorted(by_length.items())), train_max if isinstance(train_max, int) else None


def run_cells(cells: Sequence[Cell], workers: int = 1, executor: str = "pool",
              on_record: Optional[Callable[[Cell, dict, bool], None]] = None) -> list[dict]:
    """Train the cells that have no finished result; returns one record per cell, in order.

    ``on_record(cell, record, cached)`` is called for each cell as its record is known:
    cached ones first, then the rest as they finish. ``workers == 1`` with the pool
    executor trains in this process, one cell after another; more use a process pool
    (forkserver where the platform has it, else spawn: forking a process that has run
    torch is unsafe). ``executor="ray"`` sends cells to Ray: the cluster at RAY_ADDRESS,
    else a local one with ``workers`` CPUs.
    """
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise UserError(f"--workers {workers}: expected a positive number")
    notify = on_record or (lambda cell, record, cached: None)
    records: dict[str, dict] = {}
    todo: list[Cell] = []
    queued: set[str] = set()
    for cell in cells:
        if cell.key in records or cell.key in queued:  # cells with the same resolved config train once
            continue
        record = cached_record(cell)
        if record is None:
            todo.append(cell)
            queued.add(cell.key)
        else:
            records[cell.key] = record
    for cell in cells:
        if cell.key in records:
            notify(cell, records[cell.key], True)

    def finished(cell: Cell, record: dict) -> None:
        records[cell.key] = record
        for same in cells:
            if same.key == cell.key:
                notify(same, record, False)

    if todo:
        if executor == "ray":
            _run_ray(todo, workers, finished)
        elif workers == 1 or len(todo) == 1:
            _run_here(todo, finished)
        else:
            _run_pool(todo, min(workers, len(todo)), finished)
    return [records[cell.key] for cell in cells]


def _run_here(todo: Sequence[Cell], finished: Callable[[Cell, dict], None]) -> None:
    threads = torch.get_num_threads()
    try:
        for cell in todo:
            finished(cell, run_cell(cell))
    finally:
        torch.set_num_threads(threads)  # each run sets its own (train.num_threads)


def _init_worker() -> None:
    torch.set_num_threads(1)


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver (its server imports torch once, then forks clean workers), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["gptdecoder.grid"])
        return context
    return multiprocessing.get_context("spawn")


def _run_pool(todo: Sequence[Cell], workers: int, finished: Callable[[Cell, dict], None]) -> None:
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(), initializer=_init_worker) as pool:
        pending = {pool.submit(run_cell, cell): cell for cell in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    finished(cell, _outcome(cell, future.exception, future.result))
        except BaseException:  # Ctrl-C: stop the running cells now (a pool worker would go on to queued ones)
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes; an unfinished cell leaves no result.json (written atomically, last)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # before shutdown forgets them
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _outcome(cell: Cell, exception: Callable[[], Optional[BaseException]], result: Callable[[], dict]) -> dict:
    """A worker's record; when the worker itself died (killed, out of memory), a failed
    record written here instead."""
    error = exception()
    if error is None:
        record = result()
        write_record(cell, record)  # the worker wrote it too, unless it ran where this directory is not
        return record
    record = {"key": cell.key, "base": cell.base, "values": cell.values, "seed": cell.seed, "status": "failed",
              "error": f"worker failed: {type(error).__name__}: {' '.join(str(error).split())}"[:500], "results": {}}
    write_record(cell, record)
    return record


def _run_ray(todo: Sequence[Cell], workers: int, finished: Callable[[Cell, dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install -r requirements.txt (or pip install ray)") from None
    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)  # the cluster at RAY_ADDRESS
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = {remote.remote(cell): cell for cell in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    outcome: dict = {}
                    try:
                        outcome["record"] = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 -- the worker process died: this cell failed
                        outcome["error"] = e
                    finished(cell, _outcome(cell, lambda: outcome.get("error"), lambda: outcome["record"]))
        except BaseException:  # Ctrl-C: a cluster of its own would go on with the cells sent to it
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


# -- summaries --------------------------------------------------------------------------------


def row_of(cell: Cell, record: dict) -> dict:
    """One results.csv/json row: base, one column per axis, seed, status, error, the numbers."""
    results = record.get("results") or {}
    return {
        "base": cell.base,
        **cell.values,
        "seed": cell.seed,
        "status": record.get("status", "failed"),
        "error": record.get("error", ""),
        "test_accuracy": results.get("test_accuracy"),
        "accuracy_by_length": results.get("accuracy_by_length") or {},
        "train_max_length": results.get("train_max_length"),
        "train_seconds": results.get("train_seconds"),
        "params": results.get("params"),
        "iters": results.get("iters"),
        "final_loss": results.get("final_loss"),
        "cell": cell.key,
    }


def variant_label(values: dict) -> str:
    """The axis values of a cell as a short label: "model.d_model=32, model.n_layer=2"."""
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items()) or "base config"


def base_labels(bases: Sequence[str]) -> dict[str, str]:
    """Short names for the bases: the file stems, or the paths where two stems are the same."""
    stems = {b: Path(b).stem for b in bases}
    unique = len(set(stems.values())) == len(stems)
    return stems if unique else {b: b for b in bases}


def groups(rows: Sequence[dict], axes: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by base + axis values (the seeds of one variant), in grid order."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["base"], *(_canonical(row[a]) for a in axes))
        grouped.setdefault(key, []).append(row)
    return grouped


def spread(values: Iterable[float]) -> Optional[dict]:
    """mean, sample std (0 for one value), min, max and n of the values; None for none."""
    values = [float(v) for v in values]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "min": min(values), "max": max(values), "n": len(values)}


def summarise(rows: Sequence[dict], axes: Sequence[str]) -> list[dict]:
    """One entry per variant (base + axis values): seeds run and ok, spreads of test accuracy
    and training seconds over the ok seeds, parameters, and the accuracy at 1.5x and 2x the
    longest training length (``at_length``)."""
    summary = []
    for group in groups(rows, axes).values():
        ok = [r for r in group if r["status"] == "ok"]
        first = group[0]
        entry = {
            "base": first["base"],
            "values": {a: first[a] for a in axes},
            "seeds": len(group),
            "ok": len(ok),
            "test_accuracy": spread(r["test_accuracy"] for r in ok if r["test_accuracy"] is not None),
            "train_seconds": spread(r["train_seconds"] for r in ok if r["train_seconds"] is not None),
            "params": next((r["params"] for r in group if r["params"] is not None), None),
        }
        for factor in (1.5, 2.0):
            entry[f"at_{factor:g}x"] = at_length(ok, factor)
        summary.append(entry)
    return summary


def at_length(rows: Sequence[dict], factor: float) -> Optional[dict]:
    """Exact match at ``factor`` x the longest training length, over the rows' seeds: at the
    longest tested length <= that target (``length`` says which); None without length data."""
    per_seed, lengths = [], set()
    for row in rows:
        by_length = {int(n): a for n, a in (row["accuracy_by_length"] or {}).items()}
        train_max = row["train_max_length"]
        if not by_length or train_max is None:
            continue
        target = factor * train_max
        tested = [n for n in by_length if n <= target]
        if not tested:
            continue
        length = max(tested)
        lengths.add(length)
        per_seed.append(by_length[length])
    if not per_seed:
        return None
    result = spread(per_seed)
    result["length"] = max(lengths) if len(lengths) == 1 else f"{min(lengths)}-{max(lengths)}"
    return result


def length_points(rows: Sequence[dict], axes: Sequence[str]) -> list[dict]:
    """For the length figure: one entry per variant with its base, label, longest training
    length, and {test length: [exact match of each ok seed]}."""
    points = []
    for group in groups(rows, axes).values():
        ok = [r for r in group if r["status"] == "ok"]
        by_length: dict[int, list[float]] = {}
        for row in ok:
            for n, a in (row["accuracy_by_length"] or {}).items():
                by_length.setdefault(int(n), []).append(float(a))
        train_max = next((r["train_max_length"] for r in ok if r["train_max_length"] is not None), None)
        first = group[0]
        points.append({"base": first["base"], "variant": variant_label({a: first[a] for a in axes}),
                       "train_max_length": train_max, "accuracy": dict(sorted(by_length.items()))})
    return points


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
