"""Command line interface: ``python -m bpe {encode,decode,explain,train}``.

Errors in the input (bad vocabulary files, unknown ids, bad sizes, missing
files) print a single ``error: ...`` line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bpe.encoder import Encoder, get_encoder
from bpe.errors import BPEError
from bpe.explain import explain, format_explanation
from bpe.train import train


def _read_text(args: argparse.Namespace) -> str:
    """The input text: the positional argument, ``--file`` (``-`` = stdin) or stdin."""
    if args.text is not None and args.file is not None:
        raise BPEError("give the text either as an argument or with --file, not both")
    if args.text is not None:
        return args.text
    if args.file is None or args.file == "-":
        return sys.stdin.read()
    return _read_file(args.file)


def _read_file(path: str) -> str:
    """A UTF-8 text file; BPEError (one ``error:`` line) if it is unreadable or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BPEError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BPEError(f"{path} is not UTF-8 text") from None


def _encoder(args: argparse.Namespace) -> Encoder:
    return get_encoder(args.vocab)


def _cmd_encode(args: argparse.Namespace) -> None:
    allowed = "all" if args.allow_special else frozenset()
    ids = _encoder(args).encode(_read_text(args), allowed_special=allowed)
    print(json.dumps(ids) if args.json else " ".join(map(str, ids)))


def _parse_ids(words: list[str]) -> list[int]:
    """Ids from arguments or stdin: space/comma separated, or a JSON list."""
    text = " ".join(words) if words else sys.stdin.read()
    tokens = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
    try:
        return [int(token) for token in tokens]
    except ValueError as exc:
        raise BPEError(f"token ids must be integers ({exc})") from None


def _cmd_decode(args: argparse.Namespace) -> None:
    encoder = _encoder(args)
    ids = _parse_ids(args.ids)
    if args.tokens:
        print(" ".join(encoder.decode_tokens(ids)))
    else:
        sys.stdout.write(encoder.decode(ids) + "\n")


def _cmd_explain(args: argparse.Namespace) -> None:
    encoder = _encoder(args)  # vocabulary errors first, as for encode
    print(format_explanation(explain(_read_text(args), encoder)))


def _cmd_train(args: argparse.Namespace) -> None:
    encoder = train(_read_file(args.input), args.vocab_size, out_dir=args.out, verbose=args.verbose)
    print(f"wrote {encoder.n_vocab} tokens to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bpe", description="A from-scratch GPT-2 byte-level BPE tokenizer."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, vocab: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if vocab:
            sub.add_argument(
                "--vocab", metavar="DIR", default=None,
                help="directory with encoder.json and vocab.bpe (default: GPT-2's)",
            )
        return sub

    def add_text_input(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("text", nargs="?", help="the text (default: read --file or stdin)")
        sub.add_argument("--file", metavar="PATH", help="read the text from PATH ('-' = stdin)")

    encode = add("encode", "Print the token ids of a text.")
    add_text_input(encode)
    encode.add_argument("--json", action="store_true", help="print a JSON list")
    encode.add_argument(
        "--allow-special", action="store_true",
        help="encode <|endoftext|> as its special id (default: it is an error)",
    )
    encode.set_defaults(run=_cmd_encode)

    decode = add("decode", "Print the text of token ids (arguments, or stdin).")
    decode.add_argument("ids", nargs="*", help="token ids, e.g. 15496 995 (or a JSON list)")
    decode.add_argument("--tokens", action="store_true", help="show each token separately")
    decode.set_defaults(run=_cmd_decode)

    explain = add("explain", "Show the BPE merges applied to each pre-token.")
    add_text_input(explain)
    explain.set_defaults(run=_cmd_explain)

    train_cmd = add("train", "Learn a BPE vocabulary from a UTF-8 text file.", vocab=False)
    train_cmd.add_argument("--input", required=True, metavar="FILE", help="training text")
    train_cmd.add_argument(
        "--vocab-size", required=True, type=int, metavar="N",
        help="total tokens: 256 bytes + merges + <|endoftext|> (>= 257)",
    )
    train_cmd.add_argument("--out", required=True, metavar="DIR", help="output directory")
    train_cmd.add_argument("--verbose", action="store_true", help="print progress to stderr")
    train_cmd.set_defaults(run=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except BPEError as exc:  # also covers disallowed special tokens
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (e.g. `| head`): not an error. Point stdout
        # at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
