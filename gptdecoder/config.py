"""The run configuration: typed sections read from YAML, every key checked.

A config file has one mapping per section (model, task, train, eval, output; and data
for text mode, ``task.name: text``); each section is a plain dataclass below (DataConfig
lives in gptdecoder/text.py), and its field types are the schema. ``load_config``
reads the file, applies ``--set section.key=value`` overrides (values parsed as YAML),
then checks every key and type, so a typo fails at once with a suggestion instead of
being silently ignored an hour into training.

To add a section: write its dataclass and add a field for it to ``Config``; the loader,
the override syntax and the error messages pick it up from there.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from gptdecoder import runtime
from gptdecoder.errors import UserError
from gptdecoder.model import GPTConfig
from gptdecoder.tasks import TASKS, did_you_mean, get_task, task_fields
from gptdecoder.text import DataConfig


@dataclasses.dataclass
class ModelConfig:
    """The network's shape; mirrors gptdecoder.model.GPTConfig (vocab_size comes from the task)."""

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    mlp_ratio: int = 4
    block_size: Optional[int] = None  # None: just long enough for the task (and eval.longer_by)
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    activation: str = "gelu_tanh"  # gelu_tanh (GPT-2) | gelu (exact erf, faster on CPU)


@dataclasses.dataclass
class TaskConfig:
    """Which task to train on; ``params`` are that task's dataclass fields (see gptdecoder/tasks)."""

    name: str = "sort"
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainConfig:
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 where the hardware has it)
    # CPU threads for torch (0: torch's default). Small models gain nothing from more threads,
    # and on a busy machine threads that wait for each other make every step ~10x slower.
    num_threads: int = 1
    batch_size: int = 256  # sequences per optimizer step, split over DDP processes
    grad_accum: int = 1  # micro-batches per optimizer step (each batch_size / grad_accum)
    max_iters: int = 2000
    max_seconds: Optional[float] = None  # also stop after this much training time
    lr: float = 3e-3
    min_lr: float = 3e-4  # the cosine decays from lr to min_lr
    warmup_iters: int = 50
    lr_decay_iters: Optional[int] = None  # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max gradient norm; 0 switches clipping off
    eval_interval: int = 50  # quick held-out eval (eval.quick_examples) every N iters
    stop_at_accuracy: Optional[float] = 1.0  # stop once held-out exact match reaches this
    log_interval: int = 10
    ckpt_interval: int = 0  # also checkpoint every N iters (0: only at the end)


@dataclasses.dataclass
class EvalConfig:
    examples: int = 5000  # held-out set size (all test prompts when there are fewer)
    quick_examples: int = 512  # subset used for the evals during training
    train_examples: int = 1000  # training prompts scored at the end (train_accuracy)
    batch_size: int = 2500  # prompts decoded at once
    longer_by: int = 2  # length generalisation: also test inputs up to this much longer
    mistakes: int = 5  # how many wrong answers to print


@dataclasses.dataclass
class OutputConfig:
    dir: Optional[str] = None  # None: runs/<config file stem>
    plots: bool = True
    tensorboard: bool = False  # only used when tensorboard is installed
    wandb: bool = False  # only used when wandb is installed (and logged in; never asks)
    wandb_project: str = "gptdecoder"


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # text mode (task.name: text) only

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- loading -------------------------------------------------------------------------


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides, validate, resolve defaults.

    Raises UserError for a missing or malformed file, an unknown key (with a
    suggestion), a value of the wrong type, or a model too short for its task.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "config", "a mapping of sections")
    for item in overrides:
        apply_override(raw, item)
    config = config_from_dict(raw)
    if config.output.dir is None:
        config.output.dir = str(Path("runs") / path.stem)
    return config


def read_yaml_mapping(path: Union[str, Path], what: str, expected: str = "a mapping") -> dict:
    """The YAML mapping in ``path`` (an empty file is {}); UserError naming ``what`` (e.g.
    "config") for a file that is missing, unreadable, not YAML or not a mapping."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise UserError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{what} {str(path)!r} must be {expected}, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict, item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (so 500 is an int)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected section.key=value, e.g. train.max_iters=500")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"--set {item!r}: the value is not valid YAML") from None
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: dict) -> Config:
    """A validated Config from a plain dict (a parsed YAML file, or a checkpoint's "config")."""
    sections = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise UserError(f"unknown config section {name!r}{did_you_mean(name, SECTIONS)}")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UserError(f"config section {name!r} must be a mapping, got {value!r}")
        sections[name] = build_section(SECTIONS[name], value, name)
    config = Config(**sections)
    validate(config)
    return config


def build_section(cls: type, raw: dict, prefix: str) -> Any:
    """One section dataclass from its mapping, each key checked against the field types."""
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise UserError(f"unknown config key {prefix}.{key}{did_you_mean(key, hints)}")
        values[key] = check_type(value, hints[key], f"{prefix}.{key}")
    return cls(**values)


def check_type(value: Any, expected: Any, key: str) -> Any:
    """``value`` if it fits the type hint (an int is accepted for a float), else UserError."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is Union:  # Optional[X] is Union[X, None]
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return check_type(value, inner, key)
    base = origin or expected
    ok = isinstance(value, base) and not (isinstance(value, bool) and base is not bool)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is float and isinstance(value, str):
        try:  # PyYAML reads 1e-3 (no dot) as a string, following YAML 1.1: accept it
            return float(value)
        except ValueError:
            pass
    if not ok:
        raise UserError(f"{key}={value!r}: expected {type_name(expected)}, got {type(value).__name__}")
    return value


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Union:
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    return {type(None): "null"}.get(hint, getattr(typing.get_origin(hint) or hint, "__name__", str(hint)))


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


# -- cross-field checks ----------------------------------------------------------------


def validate(config: Config) -> None:
    """Checks that need more than one key, or the task; fills model.block_size when unset."""
    train = config.train
    try:
        runtime.resolve_device(train.device)
        runtime.resolve_precision(train.precision, "cpu")
    except ValueError as e:
        raise UserError(f"train.{e}") from None
    positive = {
        "train.batch_size": train.batch_size, "train.grad_accum": train.grad_accum,
        "train.max_iters": train.max_iters, "train.eval_interval": train.eval_interval,
        "train.log_interval": train.log_interval, "train.lr": train.lr,
        "eval.examples": config.eval.examples, "eval.quick_examples": config.eval.quick_examples,
        "eval.batch_size": config.eval.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key}={value!r}: expected a positive number")
    if train.batch_size % train.grad_accum:
        raise UserError(f"train.batch_size={train.batch_size} is not divisible by train.grad_accum={train.grad_accum}")
    if train.stop_at_accuracy is not None and not 0.0 < train.stop_at_accuracy <= 1.0:
        raise UserError(f"train.stop_at_accuracy={train.stop_at_accuracy}: expected a number in (0, 1] or null")
    validate_task(config)


def validate_task(config: Config) -> None:
    """The task exists, its params fit it, and the model's block_size can hold its sequences."""
    name = config.task.name
    if name == "text":  # a corpus instead of a task: see gptdecoder/text.py and the data section
        validate_text(config)
        return
    if name not in TASKS:
        raise UserError(f"unknown task task.name={name!r}{did_you_mean(name, TASKS)}")
    fields = task_fields(name)
    hints = typing.get_type_hints(TASKS[name])
    for key, value in config.task.params.items():
        if key not in fields:
            raise UserError(f"unknown config key task.params.{key} for task {name!r}{did_you_mean(key, fields)}")
        config.task.params[key] = check_type(value, hints[key], f"task.params.{key}")
    task = get_task(name, **config.task.params)
    needed = task.seq_len - 1
    if config.model.block_size is None:
        config.model.block_size = max([needed] + [t.seq_len - 1 for t in longer_tasks(task, config.eval.longer_by)])
    elif config.model.block_size < needed:
        raise UserError(
            f"model.block_size={config.model.block_size} is too short for task {name!r}: its sequences "
            f"need block_size >= {needed} (task.seq_len {task.seq_len} - 1); raise it or leave it unset"
        )
    gpt_config(config, task.vocab_size)  # d_model divisible by n_head, ...


def validate_text(config: Config) -> None:
    """Text mode: no task params, an explicit context length; vocab_size comes from the tokenizer."""
    if config.task.params:
        raise UserError(f"task.params {sorted(config.task.params)} do not apply to task.name=text (use the data section)")
    if config.model.block_size is None:
        raise UserError("model.block_size is required for task.name=text: the context length in tokens, e.g. 64")
    gpt_config(config, 1)  # d_model divisible by n_head, ...


def gpt_config(config: Config, vocab_size: int) -> GPTConfig:
    """The model's GPTConfig: the model section plus the task's vocabulary size."""
    try:
        return GPTConfig(vocab_size=vocab_size, **dataclasses.asdict(config.model))
    except ValueError as e:
        raise UserError(str(e)) from None


def longer_tasks(task, longer_by: int, block_size: Optional[int] = None) -> list:
    """Variants of a length-varying task with inputs 1..longer_by longer (that fit the block)."""
    variants = []
    if not getattr(task, "length_varies", False):
        return variants
    for extra in range(1, longer_by + 1):
        try:
            longer = task.with_length(task.length + extra)
        except ValueError:  # e.g. histogram counts stop at 9
            break
        if block_size is None or longer.seq_len - 1 <= block_size:
            variants.append(longer)
    return variants


def save_config(config: Config, path: Union[str, Path]) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
