"""Synthetic tasks as a data source: training batches, greedy evaluation, results.

* ``TaskBatches`` turns a task into training batches; the batch of step i depends only
  on (seed, rank, i), so resuming at step i needs no data-loader state.
* ``evaluate_task`` scores a model by greedy, autoregressive decoding of held-out prompts.
* ``TaskData`` is the DataSource the Trainer sees (gptdecoder/data/source.py).
"""
from __future__ import annotations

import dataclasses
import random
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch

from gptdecoder import runtime
from gptdecoder.config import EVAL_POSITIONS, Config, build_task
from gptdecoder.data.source import Batch, step_seed
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task, build_example


def collate(examples: list[Example], device: str = "cpu", task: Optional[Task] = None) -> Batch:
    """(prompt, answer) pairs -> padded tensors. Padding: x 0, y -1 (ignored), mask 0.
    For a ``task`` that couples positions, also its position ids (offset 0; padding 0)."""
    rows = [(task.build if task is not None else build_example)(p, a) for p, a in examples]
    T = max(len(x) for x, _, _ in rows)
    pad = lambda row, value: row + [value] * (T - len(row))  # noqa: E731
    as_tensor = lambda rows, dtype: torch.tensor(rows, dtype=dtype, device=device)  # noqa: E731
    pos = None
    if task is not None and task.couples_positions:  # x is seq[:-1]: the last token's id is never read
        pos = as_tensor([pad(task.position_ids(p, len(a))[:-1], 0) for p, a in examples], torch.long)
    return Batch(as_tensor([pad(x, 0) for x, _, _ in rows], torch.long),
                 as_tensor([pad(y, -1) for _, y, _ in rows], torch.long),
                 as_tensor([pad(m, 0) for _, _, m in rows], torch.float), pos)


def random_offsets(pos: torch.Tensor, n_positions: int, generator: torch.Generator) -> torch.Tensor:
    """pos (B, T) with a random start offset added to each row, uniform over the offsets
    that keep every id below n_positions: training then sees every id of the model's
    range, and an id that a longer test input needs is not new (position coupling)."""
    room = n_positions - pos.max(dim=1).values  # (B,): offsets 0 .. room-1 fit
    if int(room.min()) < 1:
        raise ValueError(f"position ids up to {int(pos.max())} do not fit the model's {n_positions} positions")
    draw = torch.rand(pos.size(0), generator=generator).to(pos.device)  # (B,)
    return pos + (draw * room).long()[:, None]


class TaskBatches:
    """Random training examples of a task (never a test prompt), ``batch_size`` per step.

    When the task's prompts can be listed (a small space such as sort 6 x {0,1,2}) with
    known sampling weights, all
    training examples are tensorised once and each batch is a random draw of rows, which
    is much faster than sampling and solving in Python every step.
    """

    def __init__(self, task: Task, batch_size: int, seed: int, rank: int = 0, device: str = "cpu",
                 n_positions: Optional[int] = None) -> None:
        self.task, self.batch_size, self.seed, self.rank, self.device = task, batch_size, seed, rank, device
        self.n_positions = n_positions  # the model's position range: where coupled ids are offset to
        if task.couples_positions and not n_positions:
            raise ValueError(f"task {task.name!r} couples positions: TaskBatches needs the model's n_positions")
        self.pool: Optional[Batch] = None
        listed = task.all_prompts()
        if listed is not None:
            prompts = [p for p in listed if not task.is_test(p)]
            weights = [task.prompt_weight(p) for p in prompts]
            if None not in weights:
                self.pool = collate([(p, task.solve(p)) for p in prompts], device, task)
                self.weights = torch.tensor(weights, dtype=torch.float)

    def get_batch(self, step: int) -> Batch:
        seed = step_seed(self.seed, self.rank, step)
        generator = torch.Generator().manual_seed(seed)
        if self.pool is not None:
            rows = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=generator)
            batch = Batch(*(None if t is None else t[rows.to(self.device)] for t in self.pool))
        else:
            rng = random.Random(seed)
            batch = collate([self.task.sample_train(rng, step) for _ in range(self.batch_size)], self.device, self.task)
        if batch.pos is not None:
            batch = batch._replace(pos=random_offsets(batch.pos, self.n_positions, generator))
        return batch




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
    token_accuracy: float = 0.0  # share of all answer tokens right (per-token accuracy)


def evaluation_positions(model: GPT, task: Task, prompts: list[list[int]], answer_len: int, mode: str,
                         generator: torch.Generator) -> Optional[torch.Tensor]:
    """The position ids to decode ``prompts`` (all of one length) at, (B, prompt + answer - 1),
    or None for the model's default 0, 1, ...: a task's coupled ids (offset 0), a fresh
    sorted draw per prompt for a model trained with randomized positions (``as_trained``),
    or explicitly 0, 1, ... for such a model under ``dense``."""
    needed = len(prompts[0]) + answer_len - 1  # the last answer token is never read
    if task.couples_positions:
        return torch.tensor([task.position_ids(p, answer_len)[:needed] for p in prompts], dtype=torch.long)
    if not model.config.random_positions:
        return None
    if mode == "as_trained":  # the draw generate itself makes, from this (seeded) generator
        return model.generation_positions(torch.tensor(prompts), answer_len, None, generator)
    return torch.arange(needed).expand(len(prompts), -1)


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
    positions: str = "as_trained",
    seed: int = 0,
) -> TaskEval:
    """Greedy-decode held-out prompts and compare with the true answers.

    Decoding is autoregressive (each answer token is conditioned on the model's own
    previous tokens, as at inference) but batched: prompts with the same prompt and
    answer lengths are decoded together with the KV-cache ``generate``. Only the model's
    forward and generate are called, so hooks attached to the model stay active.
    ``examples`` overrides the held-out set (default: ``task.test_examples(n_examples)``).
    ``positions`` (EVAL_POSITIONS) and ``seed`` decide the position ids of models that
    need them (``evaluation_positions``); the draw depends only on the seed and the
    prompt and answer lengths, so a score is reproducible.
    """
    if positions not in EVAL_POSITIONS:
        raise ValueError(f"positions={positions!r}: expected one of {', '.join(EVAL_POSITIONS)}")
    if examples is None:
        examples = task.test_examples(n_examples)
    if not examples:
        raise ValueError(f"task {task.name!r} has no examples to evaluate")
    groups: dict[tuple[int, int], list[Example]] = defaultdict(list)
    for prompt, answer in examples:
        groups[(len(prompt), len(answer))].append((prompt, answer))

    was_training = model.training
    model.eval()
    n_correct, tokens_right, tokens_seen = 0, 0, 0
    position_right: dict[int, int] = defaultdict(int)
    position_seen: dict[int, int] = defaultdict(int)
    mistakes: list[Mistake] = []
    try:
        for (prompt_len, answer_len), group in groups.items():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                prompts = torch.tensor([p for p, _ in chunk], dtype=torch.long, device=device)
                expected = torch.tensor([a for _, a in chunk], dtype=torch.long, device=device)
                generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{prompt_len}/{answer_len}/{start}".encode()))
                pos = evaluation_positions(model, task, [p for p, _ in chunk], answer_len, positions, generator)
                with runtime.autocast(device, precision):
                    out = model.generate(prompts, answer_len, do_sample=False, position_ids=pos)
                predicted = out[:, prompt_len:]
                right = predicted == expected  # (B, answer_len)
                exact = right.all(dim=1)
                n_correct += int(exact.sum())
                tokens_right += int(right.sum())
                tokens_seen += right.numel()
                for pos in range(answer_len):
                    position_right[pos] += int(right[:, pos].sum())
                    position_seen[pos] += len(chunk)
                for i in (~exact).nonzero()[:, 0].tolist():
                    if len(mistakes) < n_mistakes:
                        mistakes.append(Mistake(chunk[i][0], predicted[i].tolist(), chunk[i][1]))
    finally:
        model.train(was_training)
    per_position = [position_right[p] / position_seen[p] for p in sorted(position_seen)]
    return TaskEval(n_correct / len(examples), per_position, len(examples), mistakes,
                    tokens_right / max(1, tokens_seen))


def length_summary(by_length: dict[str, float], shortest: int, longest: int) -> str:
    """One line of exact match per length, e.g. "exact match by length (trained 1-8):
    1-7 100% 8 99.5% | 9 97% 10 80.2%": neighbouring lengths with the same rounded score
    share an entry, and '|' separates the trained lengths from the longer ones."""
    def pct(a: float) -> str:
        return f"{100 * a:.1f}".removesuffix(".0") + "%"

    entries: list[tuple[int, int, str, bool]] = []  # (first, last, score, beyond training)
    for key, accuracy in by_length.items():
        n, text, beyond = int(key), pct(accuracy), int(key) > longest
        if entries and entries[-1][2:] == (text, beyond) and entries[-1][1] == n - 1:
            entries[-1] = (entries[-1][0], n, text, beyond)
        else:
            entries.append((n, n, text, beyond))
    parts, crossed = [], False
    for first, last, text, beyond in entries:
        if beyond and not crossed:
            parts.append("|")
            crossed = True
        parts.append(f"{first if first == last else f'{first}-{last}'} {text}")
    trained = f"{shortest}" if shortest == longest else f"{shortest}-{longest}"
    return f"exact match by length (trained {trained}): " + " ".join(parts)


class TaskData:
    """A synthetic task as the Trainer's DataSource: batches for this process, the
    held-out set, quick evaluations during training and the final scores. ``task`` is
    the config's task when the caller has built it already (else it is built here)."""

    def __init__(self, config: Config, batch_size: int, rank: int = 0, device: str = "cpu",
                 precision: str = "fp32", task: Optional[Task] = None) -> None:
        self.config, self.device, self.precision = config, device, precision
        self.task = task if task is not None else build_task(config)
        self.vocab_size = self.task.vocab_size
        self.test_range = config.eval.test_lengths  # checked when the config was loaded
        self.min_block_size, self.block_size = self.task.context_sizes(self.test_range, config.eval.longer_by)
        # the model's position range, with the block_size config.resolve gives it when unset
        model = dataclasses.replace(config.model, block_size=config.model.block_size or self.block_size)
        self.batches = TaskBatches(self.task, batch_size, config.train.seed, rank, device, model.n_positions)
        self.test_set = self.task.test_examples(config.eval.examples)  # in random order
        self.quick_set = self.test_set[: config.eval.quick_examples]

    def get_batch(self, step: int) -> Batch:
        return self.batches.get_batch(step)

    def score(self, model: GPT, examples: list[Example], task: Optional[Task] = None, n_mistakes: int = 0,
              positions: Optional[str] = None) -> TaskEval:
        return evaluate_task(model, task or self.task, examples=examples, device=self.device,
                             batch_size=self.config.eval.batch_size, precision=self.precision, n_mistakes=n_mistakes,
                             positions=positions or self.config.eval.positions, seed=self.config.train.seed)

    def evaluate(self, model: GPT, final: bool = False) -> dict:
        if final:
            return self.final_scores(model)
        result = self.score(model, self.quick_set)
        target = self.config.train.stop_at_accuracy
        if target is not None and result.accuracy >= target and len(self.quick_set) < len(self.test_set):
            result = self.score(model, self.test_set)  # the small set is perfect: confirm on all of it
        return {"accuracy": result.accuracy, "eval_examples": result.n_examples}

    def scores_by_length(self, model: GPT, test: TaskEval, positions: str) -> tuple[dict[str, float], dict[str, float]]:
        """(exact match, per-token accuracy) at each test length, each on up to eval.examples
        held-out prompts of exactly that length ({str(length): score}, shortest first). A
        length trained on alone reuses ``test``, the score of the held-out set. A length
        with no held-out prompt (a tiny space, e.g. one digit out of three) is left out."""
        task, cfg = self.task, self.config.eval
        exact, per_token = {}, {}
        for n in task.test_lengths(self.test_range, cfg.longer_by, model.config.block_size):
            variant = task.length_variant(n)
            if variant is task:
                result = test
            else:
                examples = variant.test_examples(cfg.examples)
                if not examples:
                    continue
                result = self.score(model, examples, variant, positions=positions)
            exact[str(n)], per_token[str(n)] = result.accuracy, result.token_accuracy
        return exact, per_token

    def final_scores(self, model: GPT) -> dict:
        """results.json's task part: held-out and train exact match, per position, per length.

        ``test_accuracy`` is on the held-out set of the training distribution;
        ``accuracy_by_length`` on held-out prompts of each test length (eval.test_lengths),
        ``length_generalization`` its lengths beyond ``train_max_length``; the ``token_``
        keys are the per-token accuracies beside them. A model trained with randomized
        positions and evaluated as trained is also scored at the dense positions 0..T-1:
        the same keys with ``_dense`` at the end."""
        task, cfg = self.task, self.config.eval
        test = self.score(model, self.test_set, n_mistakes=cfg.mistakes)
        train = self.score(model, task.train_examples(cfg.train_examples))
        by_length, token_by_length = self.scores_by_length(model, test, cfg.positions)
        shortest, longest = task.length_range or (None, None)
        results = {
            "task": task.name,
            "task_params": task.params,
            "train_accuracy": train.accuracy,
            "test_accuracy": test.accuracy,
            "test_token_accuracy": test.token_accuracy,
            "test_examples": test.n_examples,
            "per_position_accuracy": test.per_position_accuracy,
            "train_min_length": shortest,
            "train_max_length": longest,
            "eval_positions": cfg.positions if model.config.random_positions else "model",
            "accuracy_by_length": by_length,
            "token_accuracy_by_length": token_by_length,
            "length_generalization": {n: a for n, a in by_length.items() if int(n) > longest},
            "mistakes": [m.describe(task) for m in test.mistakes],
        }
        if model.config.random_positions and cfg.positions != "dense":
            dense = self.score(model, self.test_set, positions="dense")
            exact, per_token = self.scores_by_length(model, dense, "dense")
            results.update(test_accuracy_dense=dense.accuracy, test_token_accuracy_dense=dense.token_accuracy,
                           accuracy_by_length_dense=exact, token_accuracy_by_length_dense=per_token)
        return results

    def save(self, run_dir: Path) -> None:
        """Nothing to add: the task is rebuilt from the config."""

    def describe(self) -> str:
        return f"task {self.task.name}"

    def summary(self, results: dict) -> list[str]:
        lines = [f"task {results['task']}: held-out exact match {results['test_accuracy']:.2%} "
                 f"on {results['test_examples']} prompts (train {results['train_accuracy']:.2%})"]
        by_length = results.get("accuracy_by_length") or {}
        if len(by_length) > 1 or set(by_length) - {str(results.get("train_max_length"))}:
            lines.append(length_summary(by_length, results["train_min_length"], results["train_max_length"]))
        if results["mistakes"]:
            lines.append("first mistakes (prompt, predicted, expected):")
            lines += [f"  {m}" for m in results["mistakes"]]
        return lines
