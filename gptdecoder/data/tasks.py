"""Synthetic tasks as a data source: training batches, greedy evaluation, results.

* ``TaskBatches`` turns a task into training batches; the batch of step i depends only
  on (seed, rank, i), so resuming at step i needs no data-loader state.
* ``evaluate_task`` scores a model by greedy, autoregressive decoding of held-out prompts.
* ``TaskData`` is the DataSource the Trainer sees (gptdecoder/data/source.py).
"""
from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch

from gptdecoder import runtime
from gptdecoder.config import Config
from gptdecoder.data.source import Batch, step_seed
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task, build_example, get_task


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
        seed = step_seed(self.seed, self.rank, step)
        if self.pool is not None:
            generator = torch.Generator().manual_seed(seed)
            rows = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=generator)
            return tuple(t[rows.to(self.device)] for t in self.pool)  # type: ignore[return-value]
        rng = random.Random(seed)
        return collate([self.task.sample_train(rng, step) for _ in range(self.batch_size)], self.device)




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
    held-out set, quick evaluations during training and the final scores."""

    def __init__(self, config: Config, batch_size: int, rank: int = 0, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.config, self.device, self.precision = config, device, precision
        self.task = get_task(config.task.name, **config.task.params)
        self.vocab_size = self.task.vocab_size
        self.test_range = config.eval.test_lengths  # checked when the config was loaded
        self.min_block_size, self.block_size = self.task.context_sizes(self.test_range, config.eval.longer_by)
        self.batches = TaskBatches(self.task, batch_size, config.train.seed, rank, device)
        self.test_set = self.task.test_examples(config.eval.examples)  # in random order
        self.quick_set = self.test_set[: config.eval.quick_examples]

    def get_batch(self, step: int) -> Batch:
        return self.batches.get_batch(step)

    def score(self, model: GPT, examples: list[Example], task: Optional[Task] = None, n_mistakes: int = 0) -> TaskEval:
        return evaluate_task(model, task or self.task, examples=examples, device=self.device,
                             batch_size=self.config.eval.batch_size, precision=self.precision, n_mistakes=n_mistakes)

    def evaluate(self, model: GPT, final: bool = False) -> dict:
        if final:
            return self.final_scores(model)
        result = self.score(model, self.quick_set)
        target = self.config.train.stop_at_accuracy
        if target is not None and result.accuracy >= target and len(self.quick_set) < len(self.test_set):
            result = self.score(model, self.test_set)  # the small set is perfect: confirm on all of it
        return {"accuracy": result.accuracy, "eval_examples": result.n_examples}

    def accuracy_by_length(self, model: GPT, test: TaskEval) -> dict[str, float]:
        """Exact match at each test length, each on up to eval.examples held-out prompts of
        exactly that length ({str(length): accuracy}, shortest first). A length trained on
        alone reuses ``test``, the score of the held-out set. A length with no held-out
        prompt (a tiny space, e.g. one digit out of three) is left out."""
        task, cfg = self.task, self.config.eval
        scores = {}
        for n in task.test_lengths(self.test_range, cfg.longer_by, model.config.block_size):
            variant = task.length_variant(n)
            if variant is task:
                scores[str(n)] = test.accuracy
                continue
            examples = variant.test_examples(cfg.examples)
            if examples:
                scores[str(n)] = self.score(model, examples, variant).accuracy
        return scores

    def final_scores(self, model: GPT) -> dict:
        """results.json's task part: held-out and train exact match, per position, per length.

        ``test_accuracy`` is on the held-out set of the training distribution;
        ``accuracy_by_length`` on held-out prompts of each test length (eval.test_lengths),
        ``length_generalization`` its lengths beyond ``train_max_length``."""
        task, cfg = self.task, self.config.eval
        test = self.score(model, self.test_set, n_mistakes=cfg.mistakes)
        train = self.score(model, task.train_examples(cfg.train_examples))
        by_length = self.accuracy_by_length(model, test)
        shortest, longest = task.length_range or (None, None)
        return {
            "task": task.name,
            "task_params": task.params,
            "train_accuracy": train.accuracy,
            "test_accuracy": test.accuracy,
            "test_examples": test.n_examples,
            "per_position_accuracy": test.per_position_accuracy,
            "train_min_length": shortest,
            "train_max_length": longest,
            "accuracy_by_length": by_length,
            "length_generalization": {n: a for n, a in by_length.items() if int(n) > longest},
            "mistakes": [m.describe(task) for m in test.mistakes],
        }

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
