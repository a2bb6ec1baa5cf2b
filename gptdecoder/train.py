"""Train a GPT on a synthetic task: ``python -m gptdecoder train -c config.yaml`` (or demo.py).

Three pieces, usable on their own:

* ``TaskBatches`` turns a task into training batches. The batch of step i depends only
  on (seed, rank, i), so resuming at step i needs no data-loader state.
* ``Trainer`` is the optimisation loop: AdamW, warmup + cosine schedule, gradient
  clipping and accumulation, bf16 autocast, DDP, periodic evaluation with early stop,
  checkpoint state. It knows nothing about tasks: it takes any object with
  ``get_batch(step) -> (x, y, mask)`` and any ``evaluate(model) -> metrics`` callback,
  so a text dataset plugs into the same loop.
* ``evaluate_task`` scores a model by greedy, autoregressive decoding of held-out prompts.

``train_from_config`` wires them together and writes the run directory: config.yaml,
metrics.jsonl, ckpt.pt, results.json and plots.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union

import torch
from torch import nn

from gptdecoder import runtime
from gptdecoder.config import Config, TrainConfig, config_from_dict, gpt_config, load_config, longer_tasks, save_config
from gptdecoder.errors import UserError
from gptdecoder.model import GPT, GPTConfig
from gptdecoder.tasks import TASKS, Example, Task, build_example, get_task

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, mask: each (B, T)

# -- data ------------------------------------------------------------------------------


class BatchSource(Protocol):
    """What the Trainer needs from a dataset: the batch for a given optimizer step."""

    def get_batch(self, step: int) -> Batch: ...


def collate(examples: list[Example], device: str = "cpu") -> Batch:
    """(prompt, answer) pairs -> padded tensors. Padding: x 0, y -1 (ignored), mask 0."""
    rows = [build_example(p, a) for p, a in examples]
    T = max(len(x) for x, _, _ in rows)
    xs = [x + [0] * (T - len(x)) for x, _, _ in rows]
    ys = [y + [-1] * (T - len(y)) for _, y, _ in rows]
    masks = [m + [0] * (T - len(m)) for _, _, m in rows]
    as_tensor = lambda rows, dtype: torch.tensor(rows, dtype=dtype, device=device)  # noqa: E731
    return as_tensor(xs, torch.long), as_tensor(ys, torch.long), as_tensor(masks, torch.float)


class TaskBatches:
    """Random training examples of a task (never a test prompt), ``batch_size`` per step.

    When the task's prompts can be listed (a small space such as sort 6 x {0,1,2}) with
    known sampling weights, all
    training examples are tensorised once and each batch is a random draw of rows, which
    is much faster than sampling and solving in Python every step.
    """

    def __init__(self, task: Task, batch_size: int, seed: int, rank: int = 0, device: str = "cpu") -> None:
        self.task, self.batch_size, self.seed, self.rank, self.device = task, batch_size, seed, rank, device
        self.pool: Optional[Batch] = None
        listed = task.all_prompts()
        if listed is not None:
            prompts = [p for p in listed if not task.is_test(p)]
            weights = [task.prompt_weight(p) for p in prompts]
            if None not in weights:
                self.pool = collate([(p, task.solve(p)) for p in prompts], device)
                self.weights = torch.tensor(weights, dtype=torch.float)

    def get_batch(self, step: int) -> Batch:
        step_seed = zlib.crc32(f"{self.seed}/{self.rank}/{step}".encode())  # stable across processes
        if self.pool is not None:
            generator = torch.Generator().manual_seed(step_seed)
            rows = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=generator)
            return tuple(t[rows.to(self.device)] for t in self.pool)  # type: ignore[return-value]
        rng = random.Random(step_seed)
        return collate([self.task.sample_train(rng, step) for _ in range(self.batch_size)], self.device)


# -- evaluation ------------------------------------------------------------------------


@dataclasses.dataclass
class Mistake:
    prompt: list[int]
    predicted: list[int]
    expected: list[int]

    def describe(self, task: Task) -> str:
        return f"{task.format(self.prompt)}  predicted {task.format(self.predicted)}  expected {task.format(self.expected)}"


@dataclasses.dataclass
class TaskEval:
    accuracy: float  # exact match: every answer token right
    per_position_accuracy: list[float]  # share right at answer position 0, 1, ...
    n_examples: int
    mistakes: list[Mistake]  # the first few wrong answers


@torch.no_grad()
def evaluate_task(
    model: GPT,
    task: Task,
    n_examples: int = 5000,
    device: str = "cpu",
    *,
    examples: Optional[list[Example]] = None,
    batch_size: int = 2500,
    precision: str = "fp32",
    n_mistakes: int = 5,
) -> TaskEval:
    """Greedy-decode held-out prompts and compare with the true answers.

    Decoding is autoregressive (each answer token is conditioned on the model's own
    previous tokens, as at inference) but batched: prompts with the same prompt and
    answer lengths are decoded together with the KV-cache ``generate``. Only the model's
    forward and generate are called, so hooks attached to the model stay active.
    ``examples`` overrides the held-out set (default: ``task.test_examples(n_examples)``).
    """
    if examples is None:
        examples = task.test_examples(n_examples)
    if not examples:
        raise ValueError(f"task {task.name!r} has no examples to evaluate")
    groups: dict[tuple[int, int], list[Example]] = defaultdict(list)
    for prompt, answer in examples:
        groups[(len(prompt), len(answer))].append((prompt, answer))

    was_training = model.training
    model.eval()
    n_correct = 0
    position_right: dict[int, int] = defaultdict(int)
    position_seen: dict[int, int] = defaultdict(int)
    mistakes: list[Mistake] = []
    try:
        for (prompt_len, answer_len), group in groups.items():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                prompts = torch.tensor([p for p, _ in chunk], dtype=torch.long, device=device)
                expected = torch.tensor([a for _, a in chunk], dtype=torch.long, device=device)
                with runtime.autocast(device, precision):
                    out = model.generate(prompts, answer_len, do_sample=False)
                predicted = out[:, prompt_len:]
                right = predicted == expected  # (B, answer_len)
                exact = right.all(dim=1)
                n_correct += int(exact.sum())
                for pos in range(answer_len):
                    position_right[pos] += int(right[:, pos].sum())
                    position_seen[pos] += len(chunk)
                for i in (~exact).nonzero()[:, 0].tolist():
                    if len(mistakes) < n_mistakes:
                        mistakes.append(Mistake(chunk[i][0], predicted[i].tolist(), chunk[i][1]))
    finally:
        model.train(was_training)
    per_position = [position_right[p] / position_seen[p] for p in sorted(position_seen)]
    return TaskEval(n_correct / len(examples), per_position, len(examples), mistakes)


# -- distributed -------------------------------------------------------------------------


@dataclasses.dataclass
class DistInfo:
    """This process's place in a torchrun job (world_size 1 when run alone)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def process_device(device: str, dist_info: DistInfo) -> str:
    """This process's device: under torchrun on CUDA each process drives its own GPU
    (LOCAL_RANK), made current so NCCL and new tensors use it; otherwise ``device``."""
    if dist_info.world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return device


def broadcast_flag(flag: bool, dist_info: DistInfo) -> bool:
    """Rank 0's decision, on every rank (so all processes stop at the same step)."""
    if dist_info.world_size == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


# -- the training loop -------------------------------------------------------------------


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (dim >= 2: linear weights and embeddings);
    biases and LayerNorm gains are not decayed, since shrinking them towards 0 only hurts."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def lr_factor(step: int, warmup: int, decay_iters: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then cosine down to min_ratio."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_ratio
    progress = (step - warmup) / max(1, decay_iters - warmup)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)


class Trainer:
    """Optimises ``model`` on batches from ``batches``; calls ``evaluate`` every eval_interval.

    ``evaluate(model) -> dict`` may return an "accuracy"; training stops early once it
    reaches ``cfg.stop_at_accuracy``. ``log(record)`` receives every metrics record.
    Under DDP only rank 0 evaluates and logs; its stop decision is broadcast.
    """

    def __init__(
        self,
        model: GPT,
        cfg: TrainConfig,
        batches: BatchSource,
        evaluate: Optional[Callable[[GPT], dict]] = None,
        log: Optional[Callable[[dict], None]] = None,
        device: str = "cpu",
        precision: str = "fp32",
        dist_info: Optional[DistInfo] = None,
    ) -> None:
        self.model, self.cfg, self.batches = model, cfg, batches
        self.evaluate, self.log = evaluate, log or (lambda record: None)
        self.device, self.precision, self.dist = device, precision, dist_info or DistInfo()
        self.step = 0  # optimizer steps done
        self.train_seconds = 0.0  # time in the optimisation steps, evaluations excluded
        self.tokens_seen = 0  # input tokens processed, all processes
        self.last_loss = float("nan")
        self.last_accuracy: Optional[float] = None
        self.optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        decay_iters = cfg.lr_decay_iters or cfg.max_iters
        min_ratio = cfg.min_lr / cfg.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_iters, decay_iters, min_ratio)
        )
        self.ddp_model: nn.Module = model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(model)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iter": self.step,
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["iter"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.tokens_seen = state.get("tokens_seen", 0)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss."""
        x, y, mask = self.batches.get_batch(self.step)
        micro = self.cfg.grad_accum
        total = 0.0
        for i, (xs, ys, ms) in enumerate(zip(x.chunk(micro), y.chunk(micro), mask.chunk(micro))):
            last = i == micro - 1
            # DDP averages gradients across processes on backward; skip that until the last micro-batch
            sync = self.ddp_model.no_sync() if (self.dist.world_size > 1 and not last) else contextlib.nullcontext()
            with sync:
                with runtime.autocast(self.device, self.precision):
                    _, loss = self.ddp_model(xs, ys, loss_mask=ms)
                (loss / micro).backward()
            total += loss.item() / micro
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += x.numel() * self.dist.world_size
        return total

    def run_eval(self) -> bool:
        """Evaluate (rank 0), log, and return whether to stop early (on every rank)."""
        stop = False
        if self.dist.is_main and self.evaluate is not None:
            metrics = self.evaluate(self.model)
            self.last_accuracy = metrics.get("accuracy", self.last_accuracy)
            self.log({"iter": self.step, "train_seconds": round(self.train_seconds, 3), **metrics})
            target = self.cfg.stop_at_accuracy
            stop = target is not None and self.last_accuracy is not None and self.last_accuracy >= target
        return broadcast_flag(stop, self.dist)

    def fit(self, checkpoint: Optional[Callable[["Trainer"], None]] = None, progress: bool = True) -> bool:
        """Train until max_iters, the target accuracy or max_seconds; returns True if stopped early.

        ``checkpoint(trainer)`` is called every ckpt_interval steps and at the end.
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        # disable=None: a bar on a terminal, nothing when output goes to a file or pipe
        bar = tqdm(total=cfg.max_iters, initial=self.step, disable=None if (progress and self.dist.is_main) else True,
                   dynamic_ncols=True, leave=False)
        stopped = False
        while self.step < cfg.max_iters:
            t0 = time.perf_counter()
            self.last_loss = self.train_step()
            self.train_seconds += time.perf_counter() - t0
            if self.step % cfg.log_interval == 0 and self.dist.is_main:
                lr = self.scheduler.get_last_lr()[0]
                self.log({"iter": self.step, "loss": self.last_loss, "lr": lr, "train_seconds": round(self.train_seconds, 3)})
            bar.update(1)
            evaluating = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
            if evaluating:
                stopped = self.run_eval()
            if evaluating or self.step % cfg.log_interval == 0:
                bar.set_postfix(loss=f"{self.last_loss:.4f}", acc=f"{self.last_accuracy or 0:.3f}")
            if checkpoint and cfg.ckpt_interval and self.step % cfg.ckpt_interval == 0:
                checkpoint(self)
            if cfg.max_seconds is not None:  # rank 0's clock decides, so all ranks stop together
                stopped = stopped or broadcast_flag(self.train_seconds >= cfg.max_seconds, self.dist)
            if stopped:
                break
        bar.close()
        if checkpoint:
            checkpoint(self)
        return stopped


# -- run directory -----------------------------------------------------------------------


class MetricsLog:
    """Appends records to metrics.jsonl; mirrors them to TensorBoard / W&B when switched on
    in the config *and* installed (neither is ever required)."""

    def __init__(self, run_dir: Path, config: Config, append: bool) -> None:
        self.file = open(run_dir / "metrics.jsonl", "a" if append else "w")
        self.records: list[dict] = []
        self.tb = self.wandb = None
        if config.output.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                print("note: output.tensorboard is on but tensorboard is not installed; skipping it")
        if config.output.wandb:
            try:
                import wandb

                os.environ.setdefault("WANDB_SILENT", "true")
                # never prompt for a key: without one (env or `wandb login`'s ~/.netrc) log offline
                netrc = Path.home() / ".netrc"
                logged_in = "WANDB_API_KEY" in os.environ or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
                self.wandb = wandb.init(project=config.output.wandb_project, config=config.to_dict(),
                                        dir=str(run_dir), mode="online" if logged_in else "offline")
            except Exception as e:  # not installed, not logged in, offline: never block training
                print(f"note: W&B logging skipped ({type(e).__name__}: {e})")

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record["iter"]
        if self.tb is not None:
            for key, value in record.items():
                if key != "iter" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def save_checkpoint(path: Path, trainer: Trainer, config: Config) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    state = trainer.state_dict()
    state["model_config"] = dataclasses.asdict(trainer.model.config)
    state["config"] = config.to_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """torch.load with a clear UserError for a missing, unreadable or foreign file."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {e}") from None
    missing = {"model", "model_config", "config", "iter"} - set(state if isinstance(state, dict) else {})
    if missing:
        raise UserError(f"{str(path)!r} is not a gptdecoder checkpoint (missing {', '.join(sorted(missing))})")
    return state


@dataclasses.dataclass
class Run:
    """A trained run, loaded back: the model (eval mode), its config and task."""

    model: GPT
    config: Config
    task: Optional[Task]
    run_dir: Path


def load_run(run_dir: Union[str, Path], device: str = "cpu") -> Run:
    """Load ``run_dir/ckpt.pt``; UserError if the directory or checkpoint is missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    state = read_checkpoint(run_dir / "ckpt.pt", device)
    try:
        config = config_from_dict(state["config"])
        model = GPT(GPTConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (UserError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint in {str(run_dir)!r} does not match this version of gptdecoder: {e}") from None
    model.to(device).eval()
    task = get_task(config.task.name, **config.task.params) if config.task.name in TASKS else None
    return Run(model=model, config=config, task=task, run_dir=run_dir)


# -- putting it together -------------------------------------------------------------------


def seed_process(cfg: TrainConfig) -> None:
    """Threads and seeds before the model is built: the same seed gives the same weights."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)


def check_run(config: Config, model_config: GPTConfig, dist_info: DistInfo, device: str, resume: bool,
              data: str) -> tuple[Optional[dict], int]:
    """Checks shared by task and text runs before the run directory is touched; returns the
    checkpoint to resume from (None for a fresh run) and the batch size per process.

    UserError when the checkpoint was trained with another model or ``data`` (the task or
    the tokenizer, which set the vocabulary), or when train.batch_size does not split
    evenly over the processes and their gradient-accumulation micro-batches.
    """
    run_dir = Path(config.output.dir)
    resume_state = None
    if resume:
        resume_state = read_checkpoint(run_dir / "ckpt.pt", device)
        if resume_state["model_config"] != dataclasses.asdict(model_config):
            raise UserError(f"cannot resume {str(run_dir)!r}: its model or {data} differs from this config")
    per_rank, rem = divmod(config.train.batch_size, dist_info.world_size)
    if rem or per_rank % config.train.grad_accum:
        raise UserError(
            f"train.batch_size={config.train.batch_size} must split evenly over {dist_info.world_size} "
            f"process(es) x train.grad_accum={config.train.grad_accum}"
        )
    return resume_state, per_rank


def train_from_config(config: Config, resume: bool = False, progress: bool = True, verbose: bool = True) -> dict:
    """Train the run described by ``config`` into ``config.output.dir``; returns results.json's dict.

    Everything that can fail on bad input (task, model shape, resume checkpoint) is checked
    before the run directory is touched.
    """
    if config.task.name == "text":  # a corpus instead of a task: same Trainer, text batches
        from gptdecoder.text import train_text

        return train_text(config, resume=resume, progress=progress, verbose=verbose)
    run_dir = Path(config.output.dir)
    task = get_task(config.task.name, **config.task.params)
    model_config = gpt_config(config, task.vocab_size)
    device = runtime.resolve_device(config.train.device)
    precision = runtime.resolve_precision(config.train.precision, device)
    dist_info = init_distributed(device)
    device = process_device(device, dist_info)
    resume_state, per_rank = check_run(config, model_config, dist_info, device, resume, "task")

    say = print if (verbose and dist_info.is_main) else (lambda *a, **k: None)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")

    seed_process(config.train)
    model = GPT(model_config).to(device)
    test_set = task.test_examples(config.eval.examples)
    quick_set = test_set[: config.eval.quick_examples]  # test_examples is in random order

    def quick_eval(m: GPT) -> dict:
        result = evaluate_task(m, task, device=device, examples=quick_set, batch_size=config.eval.batch_size,
                               precision=precision, n_mistakes=0)
        if result.accuracy >= (config.train.stop_at_accuracy or 2.0) and len(quick_set) < len(test_set):
            # the small set is perfect: confirm on the whole held-out set before stopping
            result = evaluate_task(m, task, device=device, examples=test_set, batch_size=config.eval.batch_size,
                                   precision=precision, n_mistakes=0)
        return {"accuracy": result.accuracy, "eval_examples": result.n_examples}

    log = MetricsLog(run_dir, config, append=resume) if dist_info.is_main else None
    batches = TaskBatches(task, per_rank, config.train.seed, dist_info.rank, device)
    trainer = Trainer(model, config.train, batches, quick_eval, log, device, precision, dist_info)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        say(f"resuming {run_dir} at iter {trainer.step}")

    ckpt_path = run_dir / "ckpt.pt"

    def checkpoint(t: Trainer) -> None:
        if dist_info.is_main:
            save_checkpoint(ckpt_path, t, config)

    say(f"training {task.name} ({model.num_params():,} params) on {device} in {precision}, "
        f"{dist_info.world_size} process(es)")
    wall0 = time.perf_counter()
    stopped_early = trainer.fit(checkpoint, progress=progress)
    wall = time.perf_counter() - wall0
    if not dist_info.is_main:
        return {}

    model.eval()
    eval_kwargs = dict(device=device, batch_size=config.eval.batch_size, precision=precision)
    test = evaluate_task(model, task, examples=test_set, n_mistakes=config.eval.mistakes, **eval_kwargs)
    train = evaluate_task(model, task, examples=task.train_examples(config.eval.train_examples), **eval_kwargs)
    longer = {}
    for variant in longer_tasks(task, config.eval.longer_by, model_config.block_size):
        scored = evaluate_task(model, variant, config.eval.examples, **eval_kwargs)
        longer[str(variant.length)] = scored.accuracy
    results: dict[str, Any] = {
        "task": task.name,
        "task_params": task.params,
        "params": model.num_params(),
        "model": dataclasses.asdict(model_config),
        "iters": trainer.step,
        "stopped_early": stopped_early,
        "train_seconds": round(trainer.train_seconds, 3),
        "train_wall_seconds": round(wall, 3),
        "tokens_per_second": round(trainer.tokens_seen / max(trainer.train_seconds, 1e-9)),
        "final_loss": trainer.last_loss,
        "train_accuracy": train.accuracy,
        "test_accuracy": test.accuracy,
        "test_examples": test.n_examples,
        "per_position_accuracy": test.per_position_accuracy,
        "length_generalization": longer,
        "mistakes": [m.describe(task) for m in test.mistakes],
        "device": device,
        "precision": precision,
        "world_size": dist_info.world_size,
        "seed": config.train.seed,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log.close()
    if config.output.plots:
        from gptdecoder import plots

        # show a prompt with many distinct symbols: its attention and predictions say more
        example = max(test_set[:50], key=lambda e: len(set(e[0])))
        plots.plot_run(run_dir, log.records, model, task, example)
    say(summary(results, run_dir))
    return results


def summary(results: dict, run_dir: Path) -> str:
    lines = [
        f"task {results['task']}: held-out exact match {results['test_accuracy']:.2%} "
        f"on {results['test_examples']} prompts (train {results['train_accuracy']:.2%})",
        f"{results['iters']} iters in {results['train_seconds']:.1f} s of training "
        f"({results['tokens_per_second']:,} tokens/s), {results['params']:,} params, {results['precision']}",
    ]
    if results["length_generalization"]:
        accs = ", ".join(f"length {n}: {a:.1%}" for n, a in results["length_generalization"].items())
        lines.append(f"longer inputs than trained on: {accs}")
    if results["mistakes"]:
        lines.append("first mistakes (prompt, predicted, expected):")
        lines += [f"  {m}" for m in results["mistakes"]]
    lines.append(f"files in {run_dir}/: config.yaml metrics.jsonl ckpt.pt results.json *.png")
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="config.yaml", help="YAML config (default: config.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.max_iters=500 (repeatable)")
    parser.add_argument("--out", help="run directory (default: output.dir, or runs/<config stem>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's ckpt.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    if args.out:
        config.output.dir = args.out
    try:
        train_from_config(config, resume=args.resume, progress=not args.no_progress)
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0
