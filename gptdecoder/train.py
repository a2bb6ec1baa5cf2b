"""Training: ``train_from_config`` wires a config into the one Trainer and writes the run.

* ``Trainer`` is the optimisation loop: AdamW (or Muon for the hidden matrices), warmup
  + cosine schedule, gradient clipping and accumulation, bf16 autocast, DDP, periodic
  evaluation with early stop, checkpoint state. It knows only a DataSource
  (gptdecoder/data/source.py): batches by step, evaluation, results -- so synthetic
  tasks and text corpora train the same way.
* ``train_from_config`` resolves the config against the data, builds the model, trains,
  and writes the run directory (gptdecoder/runs.py reads it back): config.yaml,
  metrics.jsonl, ckpt.pt, results.json, and the data's own files (a text run's tokenizer).
  It looks for the device once, and builds the task once (or takes the caller's): both
  are handed down from there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from gptdecoder import runtime
from gptdecoder.config import Config, TrainConfig, resolve, save_config
from gptdecoder.data import DataSource, open_data
from gptdecoder.errors import UserError
from gptdecoder.model import GPT
from gptdecoder.runs import read_checkpoint
from gptdecoder.storage import save_checkpoint, write_atomic
from gptdecoder.tasks import Task
from gptdecoder.tasks.compiled import NOT_FOR, CompiledTask

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
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on
    CUDA. ``device`` is resolved (runtime.resolve_device), not 'auto'."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def process_device(device: str, dist_info: DistInfo) -> str:
    """This process's device, from the resolved ``device``: under torchrun on CUDA each process
    drives its own GPU (LOCAL_RANK), made current so NCCL and new tensors use it; otherwise ``device``."""
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


def on_any_rank(flags: list[bool], dist_info: DistInfo) -> list[bool]:
    """Each flag, True on every rank when it is True on at least one, in one all-reduce:
    every rank must take the same branch at the same step, or the others wait forever."""
    if dist_info.world_size == 1:
        return flags
    import torch.distributed as dist

    t = torch.tensor([int(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


# -- the training loop -------------------------------------------------------------------


def make_optimizer(params: Iterable[nn.Parameter], lr: float, weight_decay: float,
                   betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (dim >= 2: linear weights and embeddings);
    biases and LayerNorm gains are not decayed, since shrinking them towards 0 only hurts.

    On CPU and CUDA it is torch's fused AdamW: one kernel per tensor instead of a dozen
    small ops, which matters for small models, where the update costs as much as a layer.
    """
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = bool(params) and params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def hidden_matrices(model: GPT) -> list[nn.Parameter]:
    """The weights of the Linear layers inside the blocks (attention c_attn and c_proj, MLP
    c_fc and c_proj): the matrices Muon is made for. Embeddings and the LM head are not."""
    return [m.weight for m in model.blocks.modules() if isinstance(m, nn.Linear)]


def make_optimizers(model: GPT, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """train.optimizer adamw: [AdamW over every parameter]. muon: [AdamW, Muon] --
    torch.optim.Muon (its default "original" lr scaling, at train.muon_lr) for the hidden
    matrices, AdamW (at train.lr) for the embeddings, the LM head, norms and biases.

    Both torch optimizers decay a weight by lr * weight_decay per step. Muon's lr is
    muon_lr, so it gets weight_decay * lr / muon_lr: every decayed matrix then shrinks by
    the same fraction per step, whichever optimizer moves it, and train.weight_decay
    means the same with either setting.
    """
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        return [make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay, betas)]
    hidden = hidden_matrices(model)
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    muon = torch.optim.Muon(hidden, lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                            weight_decay=cfg.weight_decay * cfg.lr / cfg.muon_lr)
    return [make_optimizer(rest, cfg.lr, cfg.weight_decay, betas), muon]


def lr_factor(step: int, warmup: int, decay_iters: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then cosine down to min_ratio."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_ratio
    progress = (step - warmup) / max(1, decay_iters - warmup)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)


class Trainer:
    """Optimises ``model`` on the batches of ``data``; evaluates every cfg.eval_interval steps.

    ``data.evaluate(model)`` may return an "accuracy"; training stops early once it
    reaches ``cfg.stop_at_accuracy`` (after at least ``cfg.min_iters``). ``log(record)`` receives every metrics record.
    Under DDP only rank 0 evaluates and logs; its stop decision is broadcast.
    """

    def __init__(
        self,
        model: GPT,
        cfg: TrainConfig,
        data: DataSource,
        log: Optional[Callable[[dict], None]] = None,
        device: str = "cpu",
        precision: str = "fp32",
        dist_info: Optional[DistInfo] = None,
    ) -> None:
        self.model, self.cfg, self.data = model, cfg, data
        self.log = log or (lambda record: None)
        self.device, self.precision, self.dist = device, precision, dist_info or DistInfo()
        self.step = 0  # optimizer steps done
        self.train_seconds = 0.0  # time in the optimisation steps, evaluations excluded
        self.tokens_seen = 0  # input tokens processed, all processes
        self.last_loss = float("nan")
        self.last_accuracy: Optional[float] = None
        self.optimizers = make_optimizers(model, cfg)  # [AdamW] or [AdamW, Muon]
        decay_iters = cfg.lr_decay_iters or cfg.max_iters
        min_ratio = cfg.min_lr / cfg.lr

        def schedule(step: int) -> float:  # one factor for every optimizer's peak lr
            return lr_factor(step, cfg.warmup_iters, decay_iters, min_ratio)

        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in self.optimizers]
        self.ddp_model: nn.Module = model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(model)

    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizers[0].state_dict(),  # the AdamW
            "scheduler": self.schedulers[0].state_dict(),
            "iter": self.step,
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }
        if len(self.optimizers) > 1:  # muon: its state beside the AdamW's
            state["muon_optimizer"] = self.optimizers[1].state_dict()
            state["muon_scheduler"] = self.schedulers[1].state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizers[0].load_state_dict(state["optimizer"])
        self.schedulers[0].load_state_dict(state["scheduler"])
        if len(self.optimizers) > 1:
            self.optimizers[1].load_state_dict(state["muon_optimizer"])
            self.schedulers[1].load_state_dict(state["muon_scheduler"])
        self.step = state["iter"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.tokens_seen = state.get("tokens_seen", 0)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss."""
        batch = self.data.get_batch(self.step)
        micro = self.cfg.grad_accum
        positions = batch.pos.chunk(micro) if batch.pos is not None else [None] * micro
        total = 0.0
        for i, (xs, ys, ms, ps) in enumerate(zip(batch.x.chunk(micro), batch.y.chunk(micro), batch.mask.chunk(micro),
                                                 positions)):
            last = i == micro - 1
            # DDP averages gradients across processes on backward; skip that until the last micro-batch
            sync = self.ddp_model.no_sync() if (self.dist.world_size > 1 and not last) else contextlib.nullcontext()
            with sync:
                with runtime.autocast(self.device, self.precision):
                    _, loss = self.ddp_model(xs, ys, loss_mask=ms, position_ids=ps)
                (loss / micro).backward()
            total += loss.item() / micro
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        for optimizer, scheduler in zip(self.optimizers, self.schedulers):
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += batch.x.numel() * self.dist.world_size
        return total

    def run_eval(self) -> bool:
        """Evaluate (rank 0), log, and return whether to stop early (on every rank)."""
        stop = False
        if self.dist.is_main:
            start = time.perf_counter()
            metrics = self.data.evaluate(self.model)
            self.last_accuracy = metrics.get("accuracy", self.last_accuracy)
            # eval_seconds and the clock time let a benchmark leave its own evaluations out of a run's time
            self.log({"iter": self.step, "train_seconds": round(self.train_seconds, 3), **metrics,
                      "eval_seconds": round(time.perf_counter() - start, 3), "time": round(time.time(), 3)})
            target = self.cfg.stop_at_accuracy
            reached = target is not None and self.last_accuracy is not None and self.last_accuracy >= target
            stop = reached and self.step >= self.cfg.min_iters
        return broadcast_flag(stop, self.dist)

    def fit(self, checkpoint: Optional[Callable[["Trainer"], None]] = None, progress: bool = True) -> bool:
        """Train until max_iters, the target accuracy or max_seconds; returns True if stopped early.

        ``checkpoint(trainer)`` is called every ckpt_interval steps and at the end. A loss
        that is NaN or infinite raises UserError at once: every later step would be wasted,
        and the weights it left must not overwrite the last good checkpoint.
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        # disable=None: a bar on a terminal, nothing when output goes to a file or pipe
        bar = tqdm(total=cfg.max_iters, initial=self.step, disable=None if (progress and self.dist.is_main) else True,
                   dynamic_ncols=True, leave=False)
        stopped = False
        try:
            while self.step < cfg.max_iters:
                t0 = time.perf_counter()
                self.last_loss = self.train_step()
                self.train_seconds += time.perf_counter() - t0
                # any rank's loss not a number; rank 0's clock past max_seconds (rank 0 decides)
                diverged, time_up = on_any_rank([
                    not math.isfinite(self.last_loss),
                    cfg.max_seconds is not None and self.dist.is_main and self.train_seconds >= cfg.max_seconds,
                ], self.dist)
                if diverged:  # stop before the broken weights reach a checkpoint or an evaluation
                    raise UserError(f"training diverged at iter {self.step}: the loss is not a finite number; lower "
                                    f"train.lr (now {cfg.lr:g}) or lengthen train.warmup_iters (now "
                                    f"{cfg.warmup_iters}). ckpt.pt, if there is one, is from before this step")
                if self.step % cfg.log_interval == 0 and self.dist.is_main:
                    lrs = {name: s.get_last_lr()[0] for name, s in zip(("lr", "muon_lr"), self.schedulers)}
                    self.log({"iter": self.step, "loss": self.last_loss, **lrs,
                              "train_seconds": round(self.train_seconds, 3)})
                bar.update(1)
                evaluating = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
                if evaluating:
                    stopped = self.run_eval()
                if evaluating or self.step % cfg.log_interval == 0:
                    bar.set_postfix(loss=f"{self.last_loss:.4f}", acc=f"{self.last_accuracy or 0:.3f}")
                if checkpoint and cfg.ckpt_interval and self.step % cfg.ckpt_interval == 0:
                    checkpoint(self)
                stopped = stopped or time_up
                if stopped:
                    break
        finally:
            bar.close()
        if checkpoint:
            checkpoint(self)
        return stopped


# -- the run directory -------------------------------------------------------------------


class MetricsLog:
    """Appends records to metrics.jsonl; mirrors them to TensorBoard / W&B when switched on
    in the config *and* installed (neither is ever required)."""

    def __init__(self, run_dir: Path, config: Config, append: bool) -> None:
        self.file = open(run_dir / "metrics.jsonl", "a" if append else "w")
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
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record["iter"]
        scalars = {k: v for k, v in record.items() if k not in ("iter", "time") and isinstance(v, (int, float))}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def seed_process(cfg: TrainConfig) -> None:
    """Threads and seeds before the model is built: the same seed gives the same weights."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)


def per_process_batch(cfg: TrainConfig, dist_info: DistInfo) -> int:
    """train.batch_size split over the processes; UserError unless it splits evenly over
    them and their gradient-accumulation micro-batches."""
    per_rank, rem = divmod(cfg.batch_size, dist_info.world_size)
    if rem or per_rank % cfg.grad_accum:
        raise UserError(f"train.batch_size={cfg.batch_size} must split evenly over {dist_info.world_size} "
                        f"process(es) x train.grad_accum={cfg.grad_accum}")
    return per_rank


def checkpoint_state(trainer: Trainer, config: Config) -> dict:
    """What ckpt.pt holds: the trainer's state plus the resolved config (plain values and tensors)."""
    return {**trainer.state_dict(), "model_config": dataclasses.asdict(config.model), "config": config.to_dict()}


def build_trainer(config: Config, dist_info: Optional[DistInfo] = None, say: Callable[[str], None] = print,
                  task: Optional[Task] = None, device: Optional[str] = None) -> tuple[Config, Trainer]:
    """What a run trains with, built and checked, nothing written: this process's data
    source, the config resolved against it, the seeded model and its Trainer.

    ``task`` is the config's task and ``device`` train.device resolved, when the caller
    has them already; each left out is made here, once.
    """
    dist_info = dist_info or DistInfo()
    if device is None:
        device = runtime.resolve_device(config.train.device)
    device = process_device(device, dist_info)
    precision = runtime.resolve_precision(config.train.precision, device)
    data = open_data(config, per_process_batch(config.train, dist_info), dist_info.rank, device, precision, say, task)
    config = resolve(config, data.vocab_size, data.min_block_size, data.block_size, data.describe())
    seed_process(config.train)  # the same seed gives the same weights
    model = GPT(config.model).to(device)
    return config, Trainer(model, config.train, data, None, device, precision, dist_info)


def train_from_config(config: Config, resume: bool = False, progress: bool = True, verbose: bool = True,
                      task: Optional[Task] = None) -> dict:
    """Train the run described by ``config`` into ``config.output.dir``; returns results.json's dict.

    ``task``: the config's task when the caller has it already (load_config_and_task
    returns it); otherwise it is built once, with the data. Everything that can fail on
    bad input (data, model shape, resume checkpoint) is checked before the run directory
    is touched.
    """
    if config.task.name == CompiledTask.name:
        raise UserError(f"task {CompiledTask.name!r} cannot be trained: {NOT_FOR}")
    device = runtime.resolve_device(config.train.device)  # once; handed down from here
    dist_info = init_distributed(device)
    say = print if (verbose and dist_info.is_main) else (lambda *a, **k: None)
    config, trainer = build_trainer(config, dist_info, say, task, device)
    model, data, device, precision = trainer.model, trainer.data, trainer.device, trainer.precision
    run_dir = Path(config.output.dir)
    resume_state = None
    if resume:
        resume_state = read_checkpoint(run_dir / "ckpt.pt", device)
        if resume_state["model_config"] != dataclasses.asdict(config.model):
            raise UserError(f"cannot resume {str(run_dir)!r}: its model or data differs from this config")
        saved_with = resume_state["config"]["train"].get("optimizer", "adamw")
        if saved_with != config.train.optimizer:
            raise UserError(f"cannot resume {str(run_dir)!r}: it was trained with train.optimizer={saved_with}, "
                            f"this config says {config.train.optimizer}")
    if dist_info.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot use {str(run_dir)!r} as the run directory: {e.strerror or e}") from None
        save_config(config, run_dir / "config.yaml")
        data.save(run_dir)
        trainer.log = log = MetricsLog(run_dir, config, append=resume)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        say(f"resuming {run_dir} at iter {trainer.step}")

    def checkpoint(t: Trainer) -> None:
        if dist_info.is_main:
            save_checkpoint(run_dir / "ckpt.pt", checkpoint_state(t, config))

    say(f"training on {data.describe()}: {model.num_params():,} params, {device}, {precision}, "
        f"{dist_info.world_size} process(es)")
    wall0 = time.perf_counter()
    stopped_early = trainer.fit(checkpoint, progress=progress)
    wall = time.perf_counter() - wall0
    if not dist_info.is_main:
        return {}

    model.eval()
    results = {
        **data.evaluate(model, final=True),
        "params": model.num_params(),
        "model": dataclasses.asdict(config.model),
        "iters": trainer.step,
        "stopped_early": stopped_early,
        "train_seconds": round(trainer.train_seconds, 3),
        "train_wall_seconds": round(wall, 3),
        "tokens_per_second": round(trainer.tokens_seen / max(trainer.train_seconds, 1e-9)),
        "final_loss": trainer.last_loss,
        "device": device,
        "precision": precision,
        "world_size": dist_info.world_size,
        "seed": config.train.seed,
    }
    write_atomic(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    log.close()
    say("\n".join(data.summary(results) + [
        f"{results['iters']} iters in {results['train_seconds']:.1f} s of training "
        f"({results['tokens_per_second']:,} tokens/s), {results['params']:,} params, {precision}",
        f"files in {run_dir}/: " + " ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir())),
    ]))
    return results


