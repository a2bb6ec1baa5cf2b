"""A trained model, read back: our run directories, Hugging Face GPT-2 directories, nanoGPT checkpoints

The trainer writes a run directory; everything else (generate, export, ablate, the
mask debugger, the pictures, the notebook) only reads one, through this module, so
no view needs the trainer. Checkpoints are loaded with ``weights_only=True``: they
hold tensors and plain values only, so opening one never runs code from it.

A run directory holds::

    config.yaml     the resolved config (vocab_size and block_size filled in)
    ckpt.pt         model, optimizer, schedule, step, RNG states, config
    metrics.jsonl   one JSON record per logged step or evaluation
    results.json    the final scores
    tokenizer/      text runs only: what decoding needs

``load_model`` also opens models trained elsewhere ("bring your own model"), telling the
kinds apart by what is on disk:

* a directory with ``ckpt.pt``, or a checkpoint file: its keys decide. Ours have
  ``model, model_config, config, iter`` (a run directory: the file's directory);
  nanoGPT's have ``model_args`` and ``model`` (so nanoGPT's ``out_dir`` works too);
* a directory with ``config.json`` (and no ckpt.pt): a Hugging Face GPT-2 checkpoint,
  read by ``gptdecoder.hf.from_pretrained``.

The weight mappings live beside the model: gptdecoder/hf.py and gptdecoder/nanogpt.py.

Only our task runs know their task. Tokenizers: a text run's ``tokenizer/``; a Hugging
Face directory's ``vocab.json`` + ``merges.txt`` (GPT-2's encoder.json / vocab.bpe
formats under other names); for a nanoGPT model, as nanoGPT's sample.py decides, the
character vocabulary of its ``meta.pkl`` when there is one (``meta=`` names it, else it
is looked for beside the checkpoint, then in ``data/<dataset>/`` beside the checkpoint's
directory, as in nanoGPT's repository), else GPT-2's BPE for a model with at least
GPT-2's 50257 tokens. ``meta.pkl`` is a pickle, and unpickling can run code: it is read
by ``gptdecoder.safe_pickle``, which admits plain dicts, lists, tuples, strings, bytes,
numbers, booleans and None and looks up no global at all.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Optional, Union

from gptdecoder.config import Config, config_and_task_from_dict, default_cache_dir, load_config_and_task
from gptdecoder.data.tokenizers import TOKENIZER_DIR, BPETokenizer, Tokenizer, load_tokenizer
from gptdecoder.errors import UserError
from gptdecoder.hf import from_pretrained
from gptdecoder.model import GPT, GPTConfig
from gptdecoder.nanogpt import META, meta_paths, nanogpt_dataset, nanogpt_model, read_char_vocabulary
from gptdecoder.storage import load_weights_only, write_atomic
from gptdecoder.tasks import Task

CHECKPOINT = "ckpt.pt"
CHECKPOINT_KEYS = ("model", "model_config", "config", "iter")
HF_CONFIG = "config.json"
GPT2_VOCAB_SIZE = 50257  # GPT-2's BPE vocabulary; nanoGPT pads it to 50304 rows


def read_checkpoint(path: Union[str, Path], device: str = "cpu") -> dict:
    """The checkpoint's state dict; UserError for a missing, unreadable or foreign file.

    ``weights_only=True``: a file that needs arbitrary unpickling is refused, unrun.
    """
    state = load_weights_only(path, device)
    missing = set(CHECKPOINT_KEYS) - set(state if isinstance(state, dict) else {})
    if missing:
        raise UserError(f"{str(path)!r} is not a gptdecoder checkpoint (missing {', '.join(sorted(missing))})")
    return state


@dataclasses.dataclass
class Run:
    """A trained run, loaded back: the model (eval mode), its resolved config and task."""

    model: GPT
    config: Config
    task: Optional[Task]  # None for a text run
    run_dir: Path


def load_run(run_dir: Union[str, Path], device: str = "cpu", task: Optional[Task] = None) -> Run:
    """Load ``run_dir/ckpt.pt``; UserError if the directory or checkpoint is missing or unreadable.

    ``task``: the run's task when the caller has it already (the train command, right
    after training the run): the saved config is checked against it, not rebuilt.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    return _run_from_state(read_checkpoint(run_dir / CHECKPOINT, device), run_dir, device, task)


def _run_from_state(state: dict, run_dir: Path, device: str, task: Optional[Task] = None) -> Run:
    """The Run that a gptdecoder checkpoint's state dict describes (its task: ``task``, or built from its config)."""
    try:
        config, task = config_and_task_from_dict(state["config"], task)
        model = GPT(GPTConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (UserError, TypeError, ValueError, RuntimeError, AssertionError) as e:
        raise UserError(f"checkpoint in {str(run_dir)!r} does not match this version of gptdecoder: {e}") from None
    model.to(device).eval()
    return Run(model=model, config=config, task=task, run_dir=run_dir)


def read_metrics(run_dir: Union[str, Path]) -> list[dict]:
    """The records of ``metrics.jsonl`` in order ([] when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- any model: a run directory, a Hugging Face GPT-2 directory or a nanoGPT checkpoint -----------

KINDS = {"run": "trained run", "hf": "Hugging Face GPT-2 directory", "nanogpt": "nanoGPT checkpoint"}


@dataclasses.dataclass
class LoadedModel:
    """A model from any source ``load_model`` opens, with what that source can tell about it.

    ``tokenizer`` is read on first use, so a command that never decodes text (the mask
    debugger, ablation) does not depend on the tokenizer files being present or valid.
    """

    kind: str  # "run", "hf" or "nanogpt" (see KINDS)
    path: Path  # the run directory, the Hugging Face directory or the nanoGPT checkpoint file
    model: GPT  # in eval mode
    task: Optional[Task] = None  # our task runs only
    config: Optional[Config] = None  # our runs only: the resolved training config
    details: str = ""  # shown after the description, e.g. nanoGPT's dataset
    meta: Optional[Path] = None  # nanoGPT: the meta.pkl to read, when the caller names one
    meta_search: tuple[Path, ...] = ()  # nanoGPT: where else meta.pkl may be, in order (see nanogpt.meta_paths)

    @property
    def description(self) -> str:
        """'trained run runs/sort', 'nanoGPT checkpoint out/ckpt.pt (dataset shakespeare_char)', ..."""
        return f"{KINDS[self.kind]} {self.path}" + (f" ({self.details})" if self.details else "")

    @functools.cached_property
    def tokenizer(self) -> Optional[Tokenizer]:
        """The tokenizer that decodes this model's ids, or None (``no_tokenizer`` says why)."""
        if self.kind == "run":
            tokenizer = load_tokenizer(self.path / TOKENIZER_DIR) if self.task is None else None
        elif self.kind == "hf":
            tokenizer = _hf_tokenizer(self.path)
        elif self.meta_pkl is not None:
            tokenizer = read_char_vocabulary(self.meta_pkl, self.model.config.vocab_size)
        else:
            tokenizer = BPETokenizer.gpt2() if self.model.config.vocab_size >= GPT2_VOCAB_SIZE else None
        if tokenizer is not None and tokenizer.n_vocab > self.model.config.vocab_size:
            raise UserError(f"{self.description}: the tokenizer has {tokenizer.n_vocab} tokens but the model only "
                            f"{self.model.config.vocab_size}: they do not belong together")
        return tokenizer

    @property
    def no_tokenizer(self) -> str:
        """Why there is no tokenizer (for a message asking for token ids instead); '' if there is one."""
        vocab = self.model.config.vocab_size
        if self.kind == "run":
            return f"it was trained on task {self.task.name!r}" if self.task is not None else ""
        if self.kind == "hf":
            if _hf_tokenizer_files(self.path):
                return ""
            unread = " (its tokenizer.json is not read)" if (self.path / "tokenizer.json").is_file() else ""
            return f"the directory has no vocab.json + merges.txt, GPT-2's BPE files{unread}"
        if vocab >= GPT2_VOCAB_SIZE or self.meta_pkl is not None:
            return ""
        return (f"its {vocab}-token vocabulary is not GPT-2's, and there is no {META} (nanoGPT's character "
                f"vocabulary) at {' or '.join(map(str, self.meta_search))}; --meta PATH names one")

    @property
    def meta_pkl(self) -> Optional[Path]:
        """nanoGPT: the meta.pkl the tokenizer comes from (the one named, else the first found), or None."""
        if self.meta is not None:
            return self.meta
        return next((p for p in self.meta_search if p.is_file()), None)


def load_model(source: Union[str, Path], device: str = "cpu",
               meta: Optional[Union[str, Path]] = None) -> LoadedModel:
    """Open a run directory, a Hugging Face GPT-2 directory or a nanoGPT checkpoint (see the module docstring).

    The model comes back in eval mode on ``device``; any file or shape that does not fit
    is a one-line UserError. ``meta``: a nanoGPT character model's meta.pkl, where it is
    not beside the checkpoint or in nanoGPT's ``data/<dataset>/`` (read on first use of
    the tokenizer).
    """
    loaded = _load_any(Path(source), device)
    if meta is not None:
        if loaded.kind != "nanogpt":
            raise UserError(f"{META} {str(meta)!r} is nanoGPT's character vocabulary, but {loaded.description} is "
                            f"not a nanoGPT checkpoint")
        if not Path(meta).is_file():
            raise UserError(f"{META} {str(meta)!r} does not exist")
        loaded.meta = Path(meta)
    return loaded


def _load_any(path: Path, device: str) -> LoadedModel:
    if not path.exists():
        raise UserError(f"{str(path)!r} does not exist: expected a run directory, a Hugging Face GPT-2 "
                        f"directory or a nanoGPT ckpt.pt")
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            if (path / HF_CONFIG).is_file():
                return _load_hf(path, device)
            raise UserError(f"{str(path)!r} has neither {CHECKPOINT} (a run directory, or nanoGPT's out_dir) nor "
                            f"{HF_CONFIG} (a Hugging Face GPT-2 directory)")
        path = path / CHECKPOINT
    state = load_weights_only(path, device)
    keys = set(state) if isinstance(state, dict) else set()
    if keys >= set(CHECKPOINT_KEYS):
        run = _run_from_state(state, path.parent, device)
        return LoadedModel("run", run.run_dir, run.model, task=run.task, config=run.config)
    if keys >= {"model_args", "model"}:
        return _load_nanogpt(state, path, device)
    raise UserError(f"{str(path)!r} is neither a gptdecoder checkpoint (keys {', '.join(CHECKPOINT_KEYS)}) "
                    f"nor a nanoGPT one (keys model_args, model)")


def _load_hf(directory: Path, device: str) -> LoadedModel:
    model = from_pretrained(directory).to(device).eval()
    return LoadedModel("hf", directory, model)


def _hf_tokenizer_files(directory: Path) -> Optional[tuple[Path, Path]]:
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    return (vocab, merges) if vocab.is_file() and merges.is_file() else None


def _hf_tokenizer(directory: Path) -> Optional[BPETokenizer]:
    """GPT-2 BPE from a Hugging Face directory's vocab.json + merges.txt, or None without them.

    These are our ``bpe`` package's encoder.json and vocab.bpe, renamed; the package reads a
    directory with its own names, so the two files are copied into the cache under those,
    in a directory named by their content (the same files always share one copy, and a
    copy never changes under a reader).
    """
    files = _hf_tokenizer_files(directory)
    if files is None:
        return None
    vocab, merges = (f.read_bytes() for f in files)
    digest = hashlib.sha256(hashlib.sha256(vocab).digest() + hashlib.sha256(merges).digest()).hexdigest()[:16]
    copy = default_cache_dir() / "hf-vocab" / digest
    try:
        for name, data in (("encoder.json", vocab), ("vocab.bpe", merges)):
            if not (copy / name).is_file():
                write_atomic(copy / name, data)
    except OSError as e:
        raise UserError(f"cannot copy {directory}'s tokenizer files into the cache {copy}: {e.strerror or e}") from None
    return BPETokenizer("bpe", copy)


def _load_nanogpt(checkpoint: dict, path: Path, device: str) -> LoadedModel:
    model = nanogpt_model(checkpoint, str(path)).to(device).eval()
    dataset = nanogpt_dataset(checkpoint)
    return LoadedModel("nanogpt", path, model, details=f"dataset {dataset}" if dataset is not None else "",
                       meta_search=tuple(meta_paths(path, checkpoint)))


def task_for(loaded: LoadedModel, config_path: Optional[Union[str, Path]]) -> Task:
    """The task whose held-out examples examine ``loaded``: its own, or else the one ``config_path`` names.

    Only our task runs know their task; any other model (a text run, a Hugging Face or
    nanoGPT model) is given one with ``-c CONFIG``, and must be able to read it: its
    vocabulary must cover the task's symbols and its context the task's sequences. A task
    run may be given its own config (``-c config.yaml --run runs/config``); a config naming
    another task is refused rather than silently dropping one of the two.
    """
    if config_path is None:
        if loaded.task is None:
            raise UserError(f"{loaded.description} has no task: pass -c CONFIG with the task whose held-out "
                            f"examples to use (e.g. -c config.yaml)")
        return loaded.task
    config, task = load_config_and_task(config_path)
    if task is None:
        raise UserError(f"{config_path} trains on text: -c must name a task config")
    if loaded.task is not None:
        if task != loaded.task:
            raise UserError(f"{loaded.description} was trained on {_task_label(loaded.config)} but {config_path} "
                            f"names {_task_label(config)}: leave out -c to use the run's own task")
        return loaded.task
    model = loaded.model.config
    if task.vocab_size > model.vocab_size:
        raise UserError(f"task {task.name!r} from {config_path} has {task.vocab_size} symbols but the model's "
                        f"vocabulary only {model.vocab_size} ids")
    if task.seq_len - 1 > model.block_size:
        raise UserError(f"task {task.name!r} from {config_path} needs a context of {task.seq_len - 1} tokens but "
                        f"the model's block_size is {model.block_size}")
    return task


def _task_label(config: Optional[Config]) -> str:
    """'sort (length=4, num_digits=3)' for messages."""
    if config is None:
        return "its task"
    params = ", ".join(f"{k}={v}" for k, v in sorted(config.task.params.items()))
    return f"{config.task.name!r}" + (f" ({params})" if params else "")
