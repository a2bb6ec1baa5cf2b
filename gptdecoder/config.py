"""The one config schema: YAML -> typed sections, every key checked, ``--set`` overrides.

A config file has one mapping per section. Each section is a plain dataclass whose
field types are the schema; the ``model`` section *is* the model's own
``gptdecoder.model.GPTConfig`` (one set of defaults, one validation, here). Its defaults
are GPT-2 small's (12 layers, 12 heads, d_model 768): a config for a small experiment
says its sizes, as every file in configs/ does.

* ``load_config(path, overrides)`` reads the file, applies ``--set section.key=value``
  overrides (values parsed as YAML), checks every key (a typo fails at once with "did
  you mean") and its type (pydantic, strict), then the checks that need several keys
  or the task.
* ``load_config_and_task`` / ``config_and_task_from_dict`` also return the task those
  checks built, so that a run builds its task once and passes it along.
* ``resolve(config, ...)`` / ``resolve_task(config)`` return a *new* Config whose
  model has ``vocab_size`` and ``block_size`` filled in from the data: the config the
  user wrote is never mutated.

To add a section: write its dataclass and add a field for it to ``Config``; the loader,
the override syntax and the error messages pick it up from there.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import typing
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml
from pydantic import TypeAdapter, ValidationError

from gptdecoder import runtime
from gptdecoder.storage import write_atomic
from gptdecoder.errors import UserError
from gptdecoder.model import ACTIVATIONS, POS_ENCODINGS, GPTConfig
from gptdecoder.norms import NORMS
from gptdecoder.tasks import KNOWN_TASKS, Task, did_you_mean, get_task, task_fields

TOKENIZERS = ("char", "gpt2", "bpe")
OPTIMIZERS = ("adamw", "muon")
SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")  # 1e-3, which YAML 1.1 leaves a string


@dataclasses.dataclass
class TaskConfig:
    """Which task to train on; ``params`` are that task's dataclass fields (see gptdecoder/tasks).
    ``name: text`` trains on a text file instead (the ``data`` section).

    A task's size is in its params. Tasks with a length train on a range of lengths:
    ``length`` is the longest and ``min_length`` the shortest (unset: ``length`` only) for
    sort, reverse, copy, histogram, parity and dyck; ``num_digits`` / ``min_digits``
    (digits per operand) for addition; ``num_pairs`` / ``min_pairs`` for recall. Modular
    has no length. The alphabet is ``num_digits``, ``num_letters``, ``num_keys`` / ``num_values``,
    ``kinds`` or ``modulus``."""

    name: str = "sort"
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataConfig:
    """Text mode (``task.name: text``): the corpus and its tokenizer."""

    path: str = "data/tinyshakespeare/input.txt"  # downloaded (and checked) when it is the missing standard file
    tokenizer: str = "char"  # char | gpt2 | bpe
    vocab_size: int = 1024  # tokenizer: bpe only -- size of the vocabulary to learn
    vocab_dir: str = "vocab"  # tokenizer: bpe only -- learned vocabularies live in vocab_dir/<name>/
    # the encoded train.bin/val.bin; null: default_cache_dir() (never beside the text)
    cache_dir: Optional[str] = None


@dataclasses.dataclass
class TrainConfig:
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 where the hardware has it)
    # CPU threads for torch (0: torch's default). Small models gain nothing from more threads,
    # and on a busy machine threads that wait for each other slow every step down.
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
    # adamw: AdamW for every parameter. muon: torch.optim.Muon for the 2-D matrices inside
    # the blocks, AdamW (at lr) for embeddings, the LM head, norms and biases.
    optimizer: str = "adamw"
    muon_lr: float = 0.02  # muon: peak lr of the hidden matrices (the same schedule as lr)
    muon_momentum: float = 0.95  # muon: its momentum
    eval_interval: int = 50  # quick held-out eval (eval.quick_examples) every N iters
    stop_at_accuracy: Optional[float] = 1.0  # stop once held-out exact match reaches this
    # ... but not before this many iters: a model that fits its training lengths early
    # still sharpens, which is what longer inputs test (a study trains every cell at least
    # this long, then until stop_at_accuracy or max_iters)
    min_iters: int = 0
    log_interval: int = 10
    ckpt_interval: int = 0  # also checkpoint every N iters (0: only at the end)


# How a model trained with randomized positions is evaluated (eval.positions): with
# positions drawn as in training (Ruoss et al. 2023 do so at test time too), or with the
# dense positions 0..T-1, which training never showed it.
EVAL_POSITIONS = ("as_trained", "dense")


@dataclasses.dataclass
class EvalConfig:
    examples: int = 5000  # held-out set size (all test prompts when there are fewer)
    quick_examples: int = 512  # subset used for the evals during training (text: val windows)
    train_examples: int = 1000  # training prompts scored at the end (train_accuracy)
    batch_size: int = 2500  # prompts decoded at once
    longer_by: int = 2  # length generalisation: also test inputs up to this much longer
    mistakes: int = 5  # how many wrong answers to print
    # [lo, hi]: score held-out prompts of every length lo..hi (inclusive), in the task's own
    # length unit (see TaskConfig): up to ``examples`` test-side prompts of exactly that
    # length each, into results.json's accuracy_by_length. Lengths outside the training
    # range (task.params) are never trained on. null: the training range plus up to
    # ``longer_by`` longer (which is then ignored otherwise). The model's context is made
    # long enough for hi; an explicit model.block_size must hold it. Tasks without a
    # variable length (modular, sort without min_length) take no test_lengths.
    test_lengths: Optional[list[int]] = None
    # A model trained with randomized positions (model.random_positions) is scored at
    # positions drawn as in training (as_trained, seeded by train.seed) or at 0..T-1
    # (dense); with as_trained, results.json has the dense scores too (keys ending _dense).
    positions: str = "as_trained"


@dataclasses.dataclass
class OutputConfig:
    dir: Optional[str] = None  # None: runs/<config file stem>
    plots: bool = True
    tensorboard: bool = False  # only used when tensorboard is installed
    wandb: bool = False  # only used when wandb is installed (and logged in; never asks)
    wandb_project: str = "gptdecoder"


@dataclasses.dataclass
class Config:
    model: GPTConfig = dataclasses.field(default_factory=GPTConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # text mode (task.name: text) only

    @property
    def is_text(self) -> bool:
        return self.task.name == "text"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


# -- loading -------------------------------------------------------------------------


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides and validate it.

    UserError for a missing, empty or malformed file, an unknown key (with a
    suggestion), a value of the wrong type, or a model too short for its task.
    ``output.dir`` defaults to ``runs/<file stem>``.
    """
    return load_config_and_task(path, overrides)[0]


def load_config_and_task(path: Union[str, Path], overrides: Sequence[str] = ()) -> tuple[Config, Optional[Task]]:
    """``load_config``, and the task that its checks built (None for text): a run passes
    this task along instead of building it again."""
    path = Path(path)
    raw = read_yaml_mapping(path, "config", "a mapping of sections")
    if not raw:
        raise UserError(f"{path} is empty: expected sections such as model, task, train (see config.yaml)")
    for item in overrides:
        apply_override(raw, item)
    config, task = config_and_task_from_dict(raw)
    if config.output.dir is None:
        config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=str(Path("runs") / path.stem)))
    return config, task


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
    """Set ``a.b.c=value`` (``--set``'s syntax) in a nested dict; the value is parsed as YAML."""
    set_config_key(raw, *parse_override(item))


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b.c=VALUE"`` -> ``("a.b.c", VALUE parsed as YAML)``, as ``--set`` reads it (500 is an int)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r}: expected section.key=value, e.g. train.max_iters=500")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"override {item!r}: the value is not valid YAML") from None


def set_config_key(raw: dict, key: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for the dotted key ``a.b.c``, creating missing sections: the
    one way a key is set on a config dict (``--set`` and the bench's axes both call it).

    The value is stored as it is (a copy: bench cells share their axes' values), never
    written out and parsed back, so what an axis lists is exactly what the config gets.
    """
    parts = key.split(".")
    if not all(part.strip() == part and part for part in parts):
        raise UserError(f"config key {key!r}: expected a dotted key such as model.d_model")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None:  # absent, or an empty section in the file
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"config key {key!r}: {'.'.join(parts[:depth + 1])} is {node!r}, not a section")
    node[parts[-1]] = copy.deepcopy(value)


def config_from_dict(raw: dict) -> Config:
    """A validated Config from a plain dict (a parsed YAML file, or a checkpoint's "config")."""
    return config_and_task_from_dict(raw)[0]


def config_and_task_from_dict(raw: dict, task: Optional[Task] = None) -> tuple[Config, Optional[Task]]:
    """``config_from_dict``, and the task that its checks built (None for text). A caller
    that has the config's task already passes it as ``task``: it is checked, not rebuilt."""
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
    if config.task.name in KNOWN_TASKS:  # the task's params, type-checked (and 1e-3 made a float)
        config = dataclasses.replace(config, task=checked_task(config.task))
    return config, validate(config, task)


def build_section(cls: type, raw: dict, prefix: str) -> Any:
    """One section dataclass from its mapping, each key checked against the field types."""
    hints = {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise UserError(f"unknown config key {prefix}.{key}{did_you_mean(key, hints)}")
        values[key] = check_type(value, hints[key], f"{prefix}.{key}")
    return cls(**values)


def check_type(value: Any, expected: Any, key: str) -> Any:
    """``value`` checked against the type hint by pydantic in strict mode -- exact types,
    except that an int is accepted (and converted) for a float -- else UserError."""
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value) and float in (expected, *typing.get_args(expected)):
        value = float(value)  # PyYAML reads 1e-3 (no dot) as a string, following YAML 1.1: accept it
    try:
        return type_adapter(expected).validate_python(value, strict=True)
    except ValidationError:
        raise UserError(f"{key}={value!r}: expected {type_name(expected)}, got {type(value).__name__}") from None


@functools.lru_cache(maxsize=None)
def type_adapter(hint: Any) -> TypeAdapter:
    """pydantic's validator for one type hint (built once per hint)."""
    return TypeAdapter(hint)


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Union:
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    return {type(None): "null"}.get(hint, getattr(typing.get_origin(hint) or hint, "__name__", str(hint)))


# -- checks that need more than one key ------------------------------------------------------


def validate(config: Config, task: Optional[Task] = None) -> Optional[Task]:
    """Value ranges, cross-field checks, and the task: everything that can be known before
    any data is read. UserError on the first problem. Returns the task it checked (built
    here unless ``task`` is given); None for text. The device is named, not looked for."""
    validate_model(config.model)
    train = config.train
    try:
        runtime.check_device(train.device)
        runtime.check_precision(train.precision)
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
    if train.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer={train.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if train.muon_lr <= 0 or not 0.0 <= train.muon_momentum < 1.0:
        raise UserError(f"train.muon_lr={train.muon_lr}, train.muon_momentum={train.muon_momentum}: "
                        "expected lr > 0 and momentum in [0, 1)")
    if train.batch_size % train.grad_accum:
        raise UserError(f"train.batch_size={train.batch_size} is not divisible by train.grad_accum={train.grad_accum}")
    if config.eval.positions not in EVAL_POSITIONS:
        raise UserError(f"eval.positions={config.eval.positions!r}: expected one of {', '.join(EVAL_POSITIONS)}")
    if not 0 <= train.min_iters <= train.max_iters:
        raise UserError(f"train.min_iters={train.min_iters}: expected 0 .. train.max_iters ({train.max_iters})")
    if train.stop_at_accuracy is not None and not 0.0 < train.stop_at_accuracy <= 1.0:
        raise UserError(f"train.stop_at_accuracy={train.stop_at_accuracy}: expected a number in (0, 1] or null")
    if config.is_text:
        validate_text(config)
        return None
    return validate_task(config, task)


def validate_model(model: GPTConfig) -> None:
    """The model section: sizes positive, heads dividing d_model (unless head_size is set), a
    known activation, norm and position encoding."""
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio", "head_size", "mlp_hidden"):
        value = getattr(model, name)
        if value is not None and value < 1:
            raise UserError(f"model.{name}={value!r}: expected a positive integer")
    if model.head_size is None and model.d_model % model.n_head:
        raise UserError(
            f"model.d_model={model.d_model} is not divisible by model.n_head={model.n_head}: "
            f"pick d_model as a multiple of n_head (e.g. {model.n_head * max(1, model.d_model // model.n_head)}) "
            f"or set model.head_size"
        )
    if not 0.0 <= model.dropout < 1.0:
        raise UserError(f"model.dropout={model.dropout!r}: expected a number in [0, 1)")
    if model.activation not in ACTIVATIONS:
        raise UserError(f"model.activation={model.activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    if model.norm not in NORMS:
        raise UserError(f"model.norm={model.norm!r}: expected one of {', '.join(NORMS)}")
    if model.pos_encoding not in POS_ENCODINGS:
        raise UserError(f"model.pos_encoding={model.pos_encoding!r}: expected one of {', '.join(POS_ENCODINGS)}")
    if model.random_positions < 0:
        raise UserError(f"model.random_positions={model.random_positions}: expected 0 (off) or a positive integer")
    if model.random_positions and model.block_size and model.random_positions < model.block_size:
        raise UserError(f"model.random_positions={model.random_positions} is smaller than model.block_size="
                        f"{model.block_size}: expected 0 (off) or a range at least as long as the context")
    if model.pos_encoding == "sinusoidal" and model.d_model % 2:
        raise UserError(f"model.pos_encoding=sinusoidal needs an even model.d_model; got {model.d_model}")
    if model.pos_encoding == "rope" and model.d_head % 2:
        raise UserError(f"model.pos_encoding=rope needs an even head size; got {model.d_head}")
    if model.rope_base <= 1.0:
        raise UserError(f"model.rope_base={model.rope_base}: expected a number > 1")
    if model.logit_softcap is not None and model.logit_softcap <= 0:
        raise UserError(f"model.logit_softcap={model.logit_softcap}: expected a positive number or null (off)")


def checked_task(task: TaskConfig) -> TaskConfig:
    """The task section with each param checked against the task's fields and converted
    to the field's type (an int for a float field becomes a float)."""
    fields, hints = task_fields(task.name), typing.get_type_hints(KNOWN_TASKS[task.name])
    params = {}
    for key, value in task.params.items():
        if key not in fields:
            raise UserError(f"unknown config key task.params.{key} for task {task.name!r}{did_you_mean(key, fields)}")
        params[key] = check_type(value, hints[key], f"task.params.{key}")
    return TaskConfig(task.name, params)


def validate_task(config: Config, task: Optional[Task] = None) -> Task:
    """The task exists, its params fit it, eval.test_lengths suits it, and model.block_size
    (if set) holds its training and test sequences. Returns the task (``task``, or built here)."""
    name = config.task.name
    if name not in KNOWN_TASKS:
        raise UserError(f"unknown task task.name={name!r}{did_you_mean(name, list(KNOWN_TASKS) + ['text'])}")
    if config.eval.longer_by < 0:
        raise UserError(f"eval.longer_by={config.eval.longer_by}: expected an integer >= 0")
    if task is None:
        task = build_task(config)  # the task's own checks of its params
    resolve_task(config, task)  # the model's sizes against the task
    return task


def build_task(config: Config) -> Task:
    """The task that ``config.task`` names, built from its params (UserError for bad ones)."""
    return get_task(config.task.name, **config.task.params)


def checked_test_lengths(config: Config, task: Task) -> Optional[tuple[int, int]]:
    """eval.test_lengths as (lo, hi), checked against the task; None when unset."""
    value = config.eval.test_lengths
    if value is None:
        return None
    if len(value) != 2:
        raise UserError(f"eval.test_lengths={value}: expected [lo, hi], the shortest and longest test length")
    try:
        task.check_test_lengths(*value)
    except ValueError as e:
        raise UserError(f"eval.test_lengths={value}: {e}") from None
    return value[0], value[1]


def validate_text(config: Config) -> None:
    """Text mode: no task params, an explicit context length, a known tokenizer."""
    data = config.data
    if config.task.params:
        raise UserError(f"task.params {sorted(config.task.params)} do not apply to task.name=text (use the data section)")
    if config.model.block_size is None:
        raise UserError("model.block_size is required for task.name=text: the context length in tokens, e.g. 64")
    if data.tokenizer not in TOKENIZERS:
        raise UserError(f"data.tokenizer={data.tokenizer!r}: expected one of {', '.join(TOKENIZERS)}")
    if data.vocab_size < 257:
        raise UserError(f"data.vocab_size={data.vocab_size!r}: expected an integer >= 257 (256 bytes + merges)")


# -- resolving what comes from the data ---------------------------------------------------------


def resolve(config: Config, vocab_size: int, min_block_size: int, default_block_size: int, what: str) -> Config:
    """A new Config whose model has vocab_size and block_size filled in from the data.

    ``model.vocab_size`` left out takes the data's; set, it may be larger (padding) but
    not smaller. ``model.block_size`` left out takes ``default_block_size``; set, it
    must be at least ``min_block_size``. ``what`` names the data in error messages.
    """
    model = config.model
    if model.vocab_size is not None and model.vocab_size < vocab_size:
        raise UserError(f"model.vocab_size={model.vocab_size} is smaller than the {vocab_size} tokens of {what}: "
                        "raise it or leave it out")
    if model.block_size is not None and model.block_size < min_block_size:
        raise UserError(f"model.block_size={model.block_size} is too short for {what}: its sequences need "
                        f"block_size >= {min_block_size} (the longest sequence minus one); raise it or leave it out")
    model = dataclasses.replace(model, vocab_size=model.vocab_size or vocab_size,
                                block_size=model.block_size or default_block_size)
    if model.random_positions and model.random_positions < model.block_size:
        raise UserError(f"model.random_positions={model.random_positions} is smaller than the context of {what} "
                        f"(block_size {model.block_size}): expected 0 (off) or at least {model.block_size}")
    return dataclasses.replace(config, model=model)


def resolve_task(config: Config, task: Optional[Task] = None) -> Config:
    """``resolve`` for a task config: the vocabulary and sequence lengths of its task
    (``task``, when the caller has built it already; else built here).
    The default block_size holds every test length's sequences (eval.test_lengths, or the
    training range plus eval.longer_by); an explicit one must hold eval.test_lengths' longest."""
    if task is None:
        task = build_task(config)
    test_range = checked_test_lengths(config, task)
    needed, default = task.context_sizes(test_range, config.eval.longer_by)
    resolved = resolve(config, task.vocab_size, needed, default, f"task {task.name!r}")
    if task.couples_positions and config.model.random_positions:
        raise UserError(f"task {task.name!r} with coupled_positions gives each token its position id, so "
                        f"model.random_positions={config.model.random_positions} has nothing to draw: expected 0")
    block_size = config.model.block_size
    if test_range is not None and block_size is not None and block_size < default:
        raise UserError(f"model.block_size={block_size} is too short for eval.test_lengths={list(test_range)}: "
                        f"task {task.name!r} at length {test_range[1]} needs block_size >= {default}; "
                        "raise it or leave it out")
    return resolved


def default_cache_dir() -> Path:
    """Where derived data goes: $GPTDECODER_CACHE, else $XDG_CACHE_HOME/gptdecoder, else ~/.cache/gptdecoder."""
    if os.environ.get("GPTDECODER_CACHE"):
        return Path(os.environ["GPTDECODER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gptdecoder"


def save_config(config: Config, path: Union[str, Path]) -> None:
    """Write the config as YAML (temporary file + rename: never half written)."""
    write_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
