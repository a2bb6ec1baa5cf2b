"""Tasks about structure in the context: associative recall and bracket matching."""
from __future__ import annotations

import dataclasses
import random
from typing import Optional

from gptdecoder.tasks.base import Prompt, Task

DIGITS = [str(d) for d in range(10)]


@dataclasses.dataclass
class RecallTask(Task):
    """Associative recall: key-value pairs, then '?' and a key; answer its value.

    a 3 c 1 b 7 ? c -> 1. The task that induction heads solve (Olsson et al., 2022;
    also the "associative recall" probe of H3/Hyena): find the earlier occurrence of the
    query key and copy the token after it. Keys in a prompt are distinct.

    With num_queries > 1 (multi-query recall, as in Zoology's MQAR) the '?' is followed by
    several queries, each but the last already answered in the prompt:
    a 3 c 1 b 7 ? c 1 a 3 b -> 7. Every query is drawn from the pairs, so each value after
    the '?' is found the same way. Those earlier values are predictable, so the prompt
    marks them as scored (base.Prompt): training learns from num_queries tokens per
    sequence instead of one, which is what lets the induction circuit form in minutes on
    a CPU. Evaluation still scores only the answer, the value of the last query.

    With curriculum_pairs and curriculum_steps set, the training prompts of the first
    curriculum_steps optimizer steps have curriculum_pairs pairs, the later ones num_pairs.
    With 4 pairs, a short 2-pair phase forms the induction circuit, after which 4 pairs are
    learned quickly, where training on 4 pairs from the start stays on a plateau (the model
    guesses among the values) for minutes (configs/tasks/recall_4pairs.yaml; mixing the
    pair counts within each batch instead never left the plateau). The switch depends only on
    the step, so resumed and multi-process runs switch at the same point. Held-out and
    train-accuracy prompts always have num_pairs pairs (min_pairs..num_pairs with min_pairs).

    The length of a prompt is its number of pairs: num_pairs, or with ``min_pairs`` drawn
    uniformly from min_pairs..num_pairs per prompt (the '?' marks where the pairs end).
    """

    name = "recall"
    length_field, min_length_field, length_unit = "num_pairs", "min_pairs", "key-value pairs"
    num_pairs: int = 4
    num_keys: int = 8
    num_values: int = 10
    num_queries: int = 1
    curriculum_pairs: Optional[int] = None
    curriculum_steps: int = 0
    min_pairs: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.num_keys <= 26:
            raise ValueError(f"num_keys={self.num_keys}: expected 2..26")
        if not 1 <= self.num_pairs <= self.num_keys:
            raise ValueError(f"num_pairs={self.num_pairs}: expected 1..num_keys ({self.num_keys})")
        if self.min_pairs is not None and not 1 <= self.min_pairs <= self.num_pairs:
            raise ValueError(f"min_pairs={self.min_pairs}: expected 1 <= min_pairs <= num_pairs ({self.num_pairs})")
        if not 2 <= self.num_values <= 10:
            raise ValueError(f"num_values={self.num_values}: expected 2..10")
        if not isinstance(self.num_queries, int) or self.num_queries < 1:
            raise ValueError(f"num_queries={self.num_queries!r}: expected a positive integer")
        if self.curriculum_pairs is not None and not 1 <= self.curriculum_pairs <= self.num_pairs:
            raise ValueError(f"curriculum_pairs={self.curriculum_pairs}: expected 1..num_pairs ({self.num_pairs}) or None")
        if not isinstance(self.curriculum_steps, int) or self.curriculum_steps < 0:
            raise ValueError(f"curriculum_steps={self.curriculum_steps!r}: expected an integer >= 0")
        keys = [chr(ord("a") + i) for i in range(self.num_keys)]
        self.symbols = DIGITS[: self.num_values] + keys + ["?"]

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs + 1 + 2 * self.num_queries

    def length_params(self, length: int) -> dict:
        """Exactly ``length`` pairs; the curriculum, a matter of training, is dropped."""
        return {**super().length_params(length), "curriculum_pairs": None, "curriculum_steps": 0}

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = self.num_pairs if self.min_pairs is None else rng.randint(self.min_pairs, self.num_pairs)
        return self._sample_prompt(rng, n)

    def train_prompt(self, rng: random.Random, step: int) -> list[int]:
        if self.curriculum_pairs is not None and step < self.curriculum_steps:
            return self._sample_prompt(rng, self.curriculum_pairs)
        return self.sample_prompt(rng)

    def _sample_prompt(self, rng: random.Random, num_pairs: int) -> list[int]:
        keys = rng.sample(range(self.num_keys), num_pairs)
        pairs = []
        for k in keys:
            pairs += [self.num_values + k, rng.randrange(self.num_values)]
        prompt = pairs + [self.token("?")]
        scored = []
        for _ in range(self.num_queries - 1):  # answered queries: key, then its value
            query = self.num_values + rng.choice(keys)
            prompt += [query, pairs[pairs.index(query) + 1]]
            scored.append(len(prompt) - 1)
        prompt.append(self.num_values + rng.choice(keys))
        return Prompt(prompt, scored) if scored else prompt

    def solve(self, prompt: list[int]) -> list[int]:
        query = prompt[-1]
        pairs = prompt[: list(prompt).index(self.token("?"))]
        return [pairs[pairs.index(query) + 1]]

    corruption = "the queried key and a key with another value swapped, except in the final query"

    def corrupt(self, prompt: list[int], rng: random.Random) -> Optional[list[int]]:
        """Swap the queried key with another key whose value differs, everywhere but in the
        final query: that query now finds another pair, so the difference runs through the
        circuit that matches the query against the keys -- in an induction circuit, the
        previous-token head feeding the induction head's keys. (A new value in place of the
        answer would only exercise the copying.) Earlier queries are swapped too, so they
        stay consistent with the pairs. None when every key holds the same value."""
        end = list(prompt).index(self.token("?"))
        query, answer = prompt[-1], self.solve(prompt)[0]
        others = [prompt[i] for i in range(0, end, 2) if prompt[i + 1] != answer]
        if not others:
            return None
        other = rng.choice(others)
        swap = {query: other, other: query}
        twin = [swap.get(t, t) for t in prompt[:-1]] + [query]
        return Prompt(twin, prompt.scored) if isinstance(prompt, Prompt) else twin

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """The queried key's value in the key-value pairs (the position an induction head
        attends to: right after the earlier copy of the query key)."""
        pairs = list(prompt[: list(prompt).index(self.token("?"))])
        return [[pairs.index(prompt[-1]) + 1]]


@dataclasses.dataclass
class DyckTask(Task):
    """Close the open brackets: ( [ ( ) = -> ] ) . (Dyck-1 with kinds=1, Dyck-2 with kinds=2).

    The prompt is a random prefix of a bracket sequence (never deeper than max_depth);
    the answer closes every open bracket, innermost first, then '.' -- so the model must
    also say when the stack is empty. Solved with a stack; transformers learn it by
    attending to the last unmatched opener (Yao et al., 2021; Ebrahimi et al., 2020).
    """

    name = "dyck"
    length_field, min_length_field = "length", "min_length"
    length: int = 10
    kinds: int = 2
    max_depth: int = 4
    min_length: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kinds not in (1, 2, 3):
            raise ValueError(f"kinds={self.kinds}: expected 1, 2 or 3")
        if self.length < 1 or self.max_depth < 1:
            raise ValueError(f"length={self.length}, max_depth={self.max_depth}: expected >= 1")
        if self.min_length is not None and not 1 <= self.min_length <= self.length:
            raise ValueError(f"min_length={self.min_length}: expected 1 <= min_length <= length")
        pairs = ["()", "[]", "{}"][: self.kinds]
        self.symbols = [p[0] for p in pairs] + [p[1] for p in pairs] + ["=", "."]

    @property
    def seq_len(self) -> int:
        return self.length + 1 + self.max_depth + 1

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = rng.randint(self.min_length or self.length, self.length)
        stack: list[int] = []
        prompt = []
        for _ in range(n):
            if stack and (len(stack) >= self.max_depth or rng.random() < 0.5):
                prompt.append(self.kinds + stack.pop())  # the closer matching the top
            else:
                kind = rng.randrange(self.kinds)
                stack.append(kind)
                prompt.append(kind)
        return prompt + [self.token("=")]

    def solve(self, prompt: list[int]) -> list[int]:
        stack: list[int] = []
        for t in prompt[:-1]:
            if t < self.kinds:
                stack.append(t)
            else:
                stack.pop()
        return [self.kinds + k for k in reversed(stack)] + [self.token(".")]

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Each closer: the position of the unmatched opener it closes (innermost first).
        The final '.' says the stack is empty, which no single position holds: []."""
        open_at: list[int] = []  # positions of the unmatched openers
        for i, t in enumerate(prompt[:-1]):
            if t < self.kinds:
                open_at.append(i)
            else:
                open_at.pop()
        return [[i] for i in reversed(open_at)] + [[]]
