"""Tasks that rearrange or count a sequence of symbols: sort, reverse, copy, histogram."""
from __future__ import annotations

import dataclasses
import random
from typing import ClassVar, Iterator, Optional

from gptdecoder.tasks.base import Task, enumerate_sequences

# The symbols of sort, reverse and copy: base-36 digits, 0-9 then a-z (the first num_digits
# of them). More than 10 make repeated symbols rarer in long inputs.
DIGITS = [str(d) for d in range(10)] + [chr(ord("a") + i) for i in range(26)]


def _check_length(length: int, min_length: Optional[int]) -> None:
    if length < 1:
        raise ValueError(f"length={length}: expected >= 1")
    if min_length is not None and not 1 <= min_length <= length:
        raise ValueError(f"min_length={min_length}: expected 1 <= min_length <= length ({length})")


@dataclasses.dataclass
class SortTask(Task):
    """Sort digits ascending: prompt 1 2 1 0 1 0 -> answer 0 0 1 1 1 2 (minGPT's demo task).

    With fixed length (min_length unset) there is no separator: the model knows where the
    answer starts by counting, so it cannot be tested at other lengths. With ``min_length``
    (min_length == length for one length) the prompt ends in '=' and its length is
    min_length..length, drawn uniformly.
    ``repeat_boost`` makes prompts where one digit fills all but at most one position
    (1 + repeat_boost) times as likely: e.g. 222221, where the lone 1 must come first.
    Such prompts are rare (39 of 729 for 6 x {0,1,2}) and are where small sorters fail.
    """

    name = "sort"
    length_field, min_length_field = "length", "min_length"
    length: int = 6
    num_digits: int = 3
    min_length: Optional[int] = None
    repeat_boost: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_length(self.length, self.min_length)
        if not 2 <= self.num_digits <= len(DIGITS):
            raise ValueError(f"num_digits={self.num_digits}: expected 2..{len(DIGITS)} (0-9, then a-z)")
        if not 0.0 <= self.repeat_boost <= 100.0:
            raise ValueError(f"repeat_boost={self.repeat_boost}: expected a number in [0, 100]")
        self.symbols = DIGITS[: self.num_digits] + (["="] if self.length_varies else [])

    @property
    def length_varies(self) -> bool:
        return self.min_length is not None

    def fixed_length_reason(self) -> str:
        return ("task 'sort' without task.params.min_length has a fixed length and no end marker: "
                "set min_length (e.g. 1, or equal to length) to test other lengths")

    @property
    def seq_len(self) -> int:
        return 2 * self.length + (1 if self.length_varies else 0)

    def is_repetitive(self, digits: list[int]) -> bool:
        return max(digits.count(d) for d in set(digits)) >= len(digits) - 1

    def prompt_weight(self, prompt: list[int]) -> Optional[float]:
        if self.length_varies:
            return None  # lengths are drawn uniformly first: not a simple weight per prompt
        return 1.0 + self.repeat_boost if self.is_repetitive(prompt) else 1.0

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = rng.randint(self.min_length, self.length) if self.length_varies else self.length
        while True:  # rejection sampling: repetitive prompts are kept more often
            digits = [rng.randrange(self.num_digits) for _ in range(n)]
            keep = (1.0 + self.repeat_boost) if self.is_repetitive(digits) else 1.0
            if rng.random() * (1.0 + self.repeat_boost) < keep:
                return digits + ([self.token("=")] if self.length_varies else [])

    def solve(self, prompt: list[int]) -> list[int]:
        digits = prompt[:-1] if self.length_varies else prompt
        return sorted(digits)

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Every prompt position holding the answer token's digit: a sorter can copy it
        from any of them (which one is counted is the model's business)."""
        digits = prompt[:-1] if self.length_varies else prompt
        return [[i for i, t in enumerate(digits) if t == a] for a in answer]

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        if not self.length_varies:
            return enumerate_sequences(self.num_digits, [self.length])
        listed = enumerate_sequences(self.num_digits, range(self.min_length, self.length + 1))
        return None if listed is None else (p + [self.token("=")] for p in listed)


class _EqualsTerminated:
    """Shared by reverse, copy and histogram: a prompt is min_length..length symbols, drawn
    uniformly from the first ``alphabet_size`` token ids, then '='.

    A mixin for Task subclasses that have ``length`` and ``min_length`` fields.
    """

    length: int
    min_length: Optional[int]
    length_field, min_length_field = "length", "min_length"

    @property
    def alphabet_size(self) -> int:
        raise NotImplementedError

    @property
    def samples_uniformly(self) -> bool:
        return self.min_length in (None, self.length)

    @property
    def seq_len(self) -> int:
        return 2 * self.length + 1

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = rng.randint(self.min_length or self.length, self.length)
        return [rng.randrange(self.alphabet_size) for _ in range(n)] + [self.token("=")]

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        listed = enumerate_sequences(self.alphabet_size, range(self.min_length or self.length, self.length + 1))
        return None if listed is None else (p + [self.token("=")] for p in listed)


@dataclasses.dataclass
class _SeparatedSequenceTask(_EqualsTerminated, Task):
    """Shared by reverse and copy: prompt = digits then '=', answer = a function of the digits.

    With ``coupled_positions`` each answer token has the position id of the prompt digit
    it reproduces (position coupling; see ``position_ids``)."""

    length: int = 8
    num_digits: int = 10
    min_length: Optional[int] = None
    coupled_positions: bool = False

    @property
    def couples_positions(self) -> bool:
        return self.coupled_positions

    def position_ids(self, prompt: list[int], answer_length: int) -> list[int]:
        """Prompt digit i has id i + 1 and each answer token the id of the digit it
        reproduces; '=' sits one id before the first answer token's source (copy: id 0)
        or one after it (reverse: id n + 1), so that the token predicting the next
        answer token always reads the digit one id past (copy) or before (reverse) its own."""
        if not self.coupled_positions:
            return super().position_ids(prompt, answer_length)
        n = len(prompt) - 1  # the digits, without the '='
        answer = [i + 1 for i in self.answer_sources(n)][:answer_length]
        return [i + 1 for i in range(n)] + [answer[0] - self.answer_step] + answer

    # +1 when consecutive answer tokens reproduce consecutive digits (copy), -1 when the
    # answer runs backwards through the prompt (reverse)
    answer_step: ClassVar[int] = 1

    def answer_sources(self, n: int) -> list[int]:
        """The prompt index each of the n answer tokens reproduces."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_length(self.length, self.min_length)
        if not 2 <= self.num_digits <= len(DIGITS):
            raise ValueError(f"num_digits={self.num_digits}: expected 2..{len(DIGITS)} (0-9, then a-z)")
        self.symbols = DIGITS[: self.num_digits] + ["="]

    @property
    def alphabet_size(self) -> int:
        return self.num_digits


@dataclasses.dataclass
class ReverseTask(_SeparatedSequenceTask):
    """Reverse the digits: 3 1 4 1 = -> 1 4 1 3. Needs attention to a mirrored position."""

    name = "reverse"
    answer_step = -1

    def solve(self, prompt: list[int]) -> list[int]:
        return prompt[-2::-1]

    def answer_sources(self, n: int) -> list[int]:
        return list(range(n - 1, -1, -1))

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Answer token j is digit n-1-j of the n digits: the mirrored position."""
        n = len(prompt) - 1  # the digits, without the '='
        return [[n - 1 - j] for j in range(len(answer))]


@dataclasses.dataclass
class CopyTask(_SeparatedSequenceTask):
    """Repeat the digits: 3 1 4 1 = -> 3 1 4 1. Solved by an induction-style previous-token lookup."""

    name = "copy"

    def solve(self, prompt: list[int]) -> list[int]:
        return prompt[:-1]

    def answer_sources(self, n: int) -> list[int]:
        return list(range(n))

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Answer token j is digit j: the same position."""
        return [[j] for j in range(len(answer))]


@dataclasses.dataclass
class HistogramTask(_EqualsTerminated, Task):
    """For each position, how often its letter occurs in the prompt: a b a c = -> 2 1 2 1.

    The "histogram" program of Weiss et al., Thinking Like Transformers (2021): one
    attention layer that attends to all equal tokens can compute it.
    """

    name = "histogram"
    length: int = 8
    num_letters: int = 6
    min_length: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_length(self.length, self.min_length)
        if not 1 <= self.length <= 9:
            raise ValueError(f"length={self.length}: expected 1..9 (counts are the digits 1-9)")
        if not 2 <= self.num_letters <= 26:
            raise ValueError(f"num_letters={self.num_letters}: expected 2..26")
        letters = [chr(ord("a") + i) for i in range(self.num_letters)]
        self.symbols = letters + ["="] + [str(c) for c in range(1, 10)]

    @property
    def alphabet_size(self) -> int:
        return self.num_letters

    def solve(self, prompt: list[int]) -> list[int]:
        letters = prompt[:-1]
        return [self.token(str(letters.count(t))) for t in letters]

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Answer token j counts letter j: every position holding that letter (j included),
        the positions a one-layer solution attends to."""
        letters = prompt[:-1]
        return [[i for i, t in enumerate(letters) if t == letters[j]] for j in range(len(answer))]
