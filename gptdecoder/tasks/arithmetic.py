"""Arithmetic tasks: multi-digit addition, modular arithmetic, parity."""
from __future__ import annotations

import dataclasses
import random
from typing import Iterator, Optional

from gptdecoder.tasks.base import Task, enumerate_sequences

DIGITS = [str(d) for d in range(10)]
# Python's integers have no size limit; this bound only keeps sequences a model can hold
# (length generalisation tests addition far beyond the lengths trained on).
MAX_DIGITS = 100


@dataclasses.dataclass
class AdditionTask(Task):
    """a + b with equal-width operands: 047+125= -> 0172, or 2710 with reverse_output.

    The length of a prompt is its number of digits per operand, n: both operands are
    zero-padded to n digits and the sum has n + 1. It is ``num_digits``, or with
    ``min_digits`` drawn uniformly from min_digits..num_digits per prompt (the '+' and
    '=' tell the model where each operand ends). With ``reverse_output`` the sum is
    written least significant digit first, the order in which carries are computed --
    this makes the task much easier to learn (Lee et al., Teaching Arithmetic to Small
    Transformers, 2023). With ``coupled_positions`` the digits of one significance share a
    position id in both operands and the sum (see ``position_ids``).
    """

    name = "addition"
    length_field, min_length_field, length_unit = "num_digits", "min_digits", "digits per operand"
    num_digits: int = 3
    reverse_output: bool = True
    min_digits: Optional[int] = None
    coupled_positions: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_digits <= MAX_DIGITS:
            raise ValueError(f"num_digits={self.num_digits}: expected 1..{MAX_DIGITS}")
        if self.min_digits is not None and not 1 <= self.min_digits <= self.num_digits:
            raise ValueError(f"min_digits={self.min_digits}: expected 1 <= min_digits <= num_digits ({self.num_digits})")
        self.symbols = DIGITS + ["+", "="]

    @property
    def seq_len(self) -> int:
        return 2 * self.num_digits + 2 + self.num_digits + 1

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = self.num_digits if self.min_digits is None else rng.randint(self.min_digits, self.num_digits)
        a = [rng.randrange(10) for _ in range(n)]
        b = [rng.randrange(10) for _ in range(n)]
        return a + [self.token("+")] + b + [self.token("=")]

    def solve(self, prompt: list[int]) -> list[int]:
        n = list(prompt).index(self.token("+"))  # digits per operand
        a = int("".join(map(str, prompt[:n])))
        b = int("".join(map(str, prompt[n + 1 : 2 * n + 1])))
        digits = [int(c) for c in str(a + b).zfill(n + 1)]
        return digits[::-1] if self.reverse_output else digits

    @property
    def couples_positions(self) -> bool:
        return self.coupled_positions

    def position_ids(self, prompt: list[int], answer_length: int) -> list[int]:
        """Position coupling (Cho et al. 2024): the operand digits of place p (p = 0 for
        units) and the sum digit of place p all have id p + 1. '+' has id 0. The token that
        predicts the sum digit of place p then sits one id before it (reversed sum) or one
        after it (sum most significant first); '=' is placed the same way before the first
        sum digit. So every answer step reads "the operand digits whose id is mine + 1"
        (or - 1), whatever the length."""
        if not self.coupled_positions:
            return super().position_ids(prompt, answer_length)
        n = list(prompt).index(self.token("+"))  # digits per operand
        operand = [n - i for i in range(n)]  # most significant first: place n-1 .. 0 -> ids n .. 1
        places = range(answer_length) if self.reverse_output else range(answer_length - 1, -1, -1)
        answer = [p + 1 for p in places]
        equals = answer[0] - 1 if self.reverse_output else answer[0] + 1
        return operand + [0] + operand + [equals] + answer

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """The two operand digits added to make each answer digit.

        Operands are written most significant digit first: the digit of place p (p = 0
        for units) is at n-1-p in a and at 2n-p in b (after the '+'). Answer digit j has
        place j with ``reverse_output``, else place n - j. The top digit (place n) is only
        the carry out of place n-1, so its sources are the two leading digits, which
        decide that carry unless their sum is exactly 9 (then lower places do too).
        """
        n = list(prompt).index(self.token("+"))
        places = [j if self.reverse_output else n - j for j in range(len(answer))]
        return [[n - 1 - p, 2 * n - p] if p < n else [0, n + 1] for p in places]


@dataclasses.dataclass
class ModularTask(Task):
    """(a op b) mod p with one token per residue: 5 + 9 = -> 14 mod p.

    The grokking task (Power et al., 2022; Nanda et al., 2023): held-out pairs can only
    be answered by learning the group structure, not by memorising.
    """

    name = "modular"
    modulus: int = 17
    op: str = "+"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.modulus <= 200:
            raise ValueError(f"modulus={self.modulus}: expected 2..200")
        if self.op not in ("+", "-", "*"):
            raise ValueError(f"op={self.op!r}: expected '+', '-' or '*'")
        self.symbols = [str(i) for i in range(self.modulus)] + [self.op, "="]

    samples_uniformly = True

    @property
    def seq_len(self) -> int:
        return 5

    def sample_prompt(self, rng: random.Random) -> list[int]:
        return [rng.randrange(self.modulus), self.token(self.op), rng.randrange(self.modulus), self.token("=")]

    def solve(self, prompt: list[int]) -> list[int]:
        a, b, p = prompt[0], prompt[2], self.modulus
        return [{"+": a + b, "-": a - b, "*": a * b}[self.op] % p]

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """The answer is a function of both operands: positions 0 and 2."""
        return [[0, 2] for _ in answer]

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        op, eq = self.token(self.op), self.token("=")
        return ([a, op, b, eq] for a in range(self.modulus) for b in range(self.modulus))


@dataclasses.dataclass
class ParityTask(Task):
    """Parity of a bit string: 1 0 1 1 = -> 1.

    With ``running`` (the default) the answer is the parity of every prefix, 1 1 0 1:
    each step is then one XOR, which a transformer learns quickly; the final bit alone
    is famously hard to learn by gradient descent (Hahn, 2020; Anil et al., 2022).
    """

    name = "parity"
    length_field, min_length_field = "length", "min_length"
    length: int = 10
    min_length: Optional[int] = None
    running: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.length < 1 or (self.min_length is not None and not 1 <= self.min_length <= self.length):
            raise ValueError(f"length={self.length}, min_length={self.min_length}: expected 1 <= min_length <= length")
        self.symbols = ["0", "1", "="]

    @property
    def samples_uniformly(self) -> bool:
        return self.min_length in (None, self.length)

    @property
    def seq_len(self) -> int:
        return self.length + 1 + (self.length if self.running else 1)

    def sample_prompt(self, rng: random.Random) -> list[int]:
        n = rng.randint(self.min_length or self.length, self.length)
        return [rng.randrange(2) for _ in range(n)] + [self.token("=")]

    def solve(self, prompt: list[int]) -> list[int]:
        prefix_parity, running = 0, []
        for bit in prompt[:-1]:
            prefix_parity ^= bit
            running.append(prefix_parity)
        return running if self.running else running[-1:]

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """Running parity: answer j is answer j-1 XOR bit j. The earlier answer is the
        model's own previous token, not a prompt position, so the source is bit j alone.
        Final parity only: every bit."""
        if self.running:
            return [[j] for j in range(len(answer))]
        return [list(range(len(prompt) - 1)) for _ in answer]

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        listed = enumerate_sequences(2, range(self.min_length or self.length, self.length + 1))
        return None if listed is None else (p + [self.token("=")] for p in listed)
