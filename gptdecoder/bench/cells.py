"""A bench file and its cells: what a grid is, decided before anything trains.

A bench file names one or more base configs and **axes**, config keys in ``--set``'s
dotted syntax with the values to try::

    base: configs/tasks/sort.yaml          # a config file, a list of them, or {label: file}
    axes:
      model.pos_encoding: [learned, rope]  # a list of values, or {name: value}
      task.params.length: [6, 8]
    seeds: [0, 1, 2]
    set: [train.max_seconds=60]            # overrides applied to every cell
    learned_threshold: 0.99                # held-out accuracy a cell must reach to have learned

A **cell** is one (base, axis values, seed): an ordinary training run. ``load_bench``
reads and checks the file; ``expand`` builds and validates every cell's Config before
anything trains, so a typo fails at once, not an hour into the grid.

Each cell is named by ``cell_key``: a hash of everything that decides its result -- the
resolved config, the training code, the torch version -- and of nothing else. Labels
(a base's name, the names of an axis's values) are for people; they are kept out of the
key so that renaming them and re-running re-summarises the grid without retraining it.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from gptdecoder.config import (Config, build_section, config_and_task_from_dict, parse_override, read_yaml_mapping,
                               resolve_task, set_config_key)
from gptdecoder.errors import UserError
from gptdecoder.tasks import Task

CELL_FORMAT = 1  # part of every cell's key: bump it when a cell's result means something new
# the modules a training run's numbers come from (globs under gptdecoder/), hashed into every cell's key
TRAINING_CODE = ("model.py", "positions.py", "hooks.py", "config.py", "runtime.py", "train.py", "data/*.py", "tasks/*.py")
PACKAGE = Path(__file__).resolve().parent.parent  # gptdecoder/
# the settings every cell starts from: many cells train side by side (one thread each), and
# the bench draws its own figures from all of them (no per-run plots)
CELL_DEFAULTS = {"train.num_threads": 1, "output.plots": False}


@dataclasses.dataclass
class BenchFile:
    """The schema of a bench file (every key checked, like a config section)."""

    base: Union[str, list, dict] = "configs/tasks/sort.yaml"  # a config file, a list of them, or {label: file}
    # dotted config key -> list of values, or a mapping of names to values ({rope: {...}}):
    # named values label the rows, the columns and the plots by their names
    axes: dict = dataclasses.field(default_factory=dict)
    seeds: list = dataclasses.field(default_factory=lambda: [0])  # train.seed of each cell
    set: list = dataclasses.field(default_factory=list)  # KEY=VALUE overrides applied to every cell
    out: Optional[str] = None  # output directory (None: runs/<bench file stem>)
    # a cell whose held-out test_accuracy is below this did not learn its training lengths:
    # marked as such, and left out of the accuracy at longer lengths
    learned_threshold: float = 0.99


@dataclasses.dataclass
class Bench:
    """A checked bench file: base labels and files, axes, seeds, overrides, where results go."""

    path: str
    bases: list[str]  # each base's label: the path as written, or its name in a {label: file} mapping
    base_files: list[Path]  # each base's config file, as found
    axes: dict[str, list]  # dotted key -> the values the config gets
    seeds: list[int]
    overrides: list[str]
    out: str
    names: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # axis key -> its values' names, if named
    learned_threshold: float = BenchFile.learned_threshold


@dataclasses.dataclass
class Cell:
    """One run of the grid: its coordinates (labels), its validated config and task, and its cache key."""

    base: str  # the base's label
    values: dict  # axis key -> this cell's value (its name, for a named axis)
    seed: int
    config: Config  # validated; output.dir is the cell's run directory
    key: str  # hash of everything that decides the result (cell_key)
    dir: Path  # OUT/cells/<key>
    task: Optional[Task] = None  # the task the config's checks built (None: text), handed to the run

    def describe(self) -> str:
        return describe(self.base, self.values, self.seed)


def describe(base: str, values: dict, seed: int) -> str:
    """A cell in one line: "base=configs/tasks/sort.yaml model.d_model=32 seed=0"."""
    return " ".join([f"base={base}", *(f"{k}={short(v)}" for k, v in values.items()), f"seed={seed}"])


def short(value: Any) -> str:
    """A value as a label: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def canonical(value: Any) -> str:
    """A value as a comparable string (equal values, equal strings)."""
    return json.dumps(value, sort_keys=True, default=str)


# -- reading a bench file ----------------------------------------------------------------------


def load_bench(path: Union[str, Path]) -> Bench:
    """Read and check a bench file: known keys, axes as non-empty lists, seeds as ints, base
    files found, learned_threshold in [0, 1]. Each mistake is one line naming the key.

    Base config paths are taken relative to the current directory, else to the bench file's.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "bench file")
    try:
        spec = build_section(BenchFile, raw, "bench")
    except UserError as e:
        raise UserError(f"bench file {path}: {e}") from None
    bases = base_entries(spec.base)
    base_files = [find_base(file, path) for file in bases.values()]
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
        if len({canonical(v) for v in values}) < len(values):
            raise UserError(f"bench.axes.{key} lists a value twice: {values!r}")
        axes[key.strip()] = values
    if not spec.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec.seeds):
        raise UserError(f"bench.seeds={spec.seeds!r}: expected a non-empty list of integers, e.g. [0, 1, 2]")
    if len(set(spec.seeds)) < len(spec.seeds):
        raise UserError(f"bench.seeds lists a seed twice: {spec.seeds}")
    if not all(isinstance(s, str) for s in spec.set):
        raise UserError(f"bench.set={spec.set!r}: expected a list of KEY=VALUE strings, e.g. [train.max_seconds=60]")
    if not 0.0 <= spec.learned_threshold <= 1.0:
        raise UserError(f"bench.learned_threshold={spec.learned_threshold!r}: expected a held-out accuracy from "
                        "0 to 1, e.g. 0.99 (0 counts every cell as learned)")
    out = spec.out or str(Path("runs") / path.stem)
    return Bench(str(path), list(bases), base_files, axes, list(spec.seeds), list(spec.set), out, names,
                 float(spec.learned_threshold))


def base_entries(base: Union[str, list, dict]) -> dict[str, str]:
    """{label: config file} from bench.base; a file named alone, or in a list, is its own label."""
    if isinstance(base, dict):
        labels, files = [str(label) for label in base], list(base.values())
    else:
        files = [base] if isinstance(base, str) else list(base)
        labels = files
    if not files or not all(isinstance(f, str) and f for f in files):
        raise UserError(f"bench.base={base!r}: expected a config file, a non-empty list of them, "
                        "or a mapping of labels to them")
    if len(set(files)) < len(files):
        raise UserError(f"bench.base lists a config twice: {base}")
    return dict(zip(labels, files))


def find_base(name: str, bench_path: Path) -> Path:
    for candidate in (Path(name), bench_path.parent / name):
        if candidate.is_file():
            return candidate
    raise UserError(f"bench.base: no config file {name!r} (looked in the current directory and beside {bench_path})")


# -- setting config keys -----------------------------------------------------------------------


# -- expanding a bench into cells --------------------------------------------------------------


def expand(bench: Bench, extra_overrides: Sequence[str] = (), out: Optional[Union[str, Path]] = None) -> list[Cell]:
    """Every cell of the grid -- bases x product of the axes x seeds, in that order -- each
    config built and validated now; UserError (naming the cell) for the first that is not valid.

    Settings apply in this order: the base file, CELL_DEFAULTS, the bench file's ``set``,
    ``extra_overrides`` (--set), the axes, the seed; each with ``set_config_key``.
    """
    out = Path(out or bench.out)
    fixed = [*CELL_DEFAULTS.items()]
    for item in [*bench.overrides, *extra_overrides]:
        key, value = parse_override(item)
        if key in bench.axes or key == "train.seed":
            what = "an axis" if key in bench.axes else "set by seeds"
            raise UserError(f"override {item!r}: {key} is {what}; change it there, not in set/--set")
        fixed.append((key, value))
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
                try:
                    for key, value in [*fixed, *settings.items(), ("train.seed", seed)]:
                        set_config_key(cell_raw, key, value)
                    config, task = config_and_task_from_dict(cell_raw)
                except UserError as e:
                    raise UserError(f"bench {bench.path}, cell {describe(base, values, seed)}: {e}") from None
                key = cell_key(config, task)
                cell_dir = out / "cells" / key
                config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=str(cell_dir)))
                cells.append(Cell(base, values, seed, config, key, cell_dir, task))
    return cells


def cell_key(config: Config, task: Optional[Task] = None) -> str:
    """The cache key: a hash of the resolved config (output.dir left out: it is named by
    the key), the training code (``code_fingerprint``), the torch version and CELL_FORMAT.
    ``task``: the config's task when the caller has built it (else it is built here).

    Only what changes the numbers goes in: no label, no bench file path, no output
    directory. Two cells with the same key are the same run, whatever they are called.
    """
    if not config.is_text:
        config = resolve_task(config, task)  # vocab_size and block_size as the run will have them
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
    digest = hashlib.sha256()
    for pattern in TRAINING_CODE:
        for path in sorted(PACKAGE.glob(pattern)):
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
