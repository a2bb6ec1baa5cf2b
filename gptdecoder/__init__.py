"""gptdecoder: a readable GPT-2-style decoder with hook points, synthetic tasks and an attention lab."""
from gptdecoder.model import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
__version__ = "0.1.0"
