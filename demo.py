"""Train a GPT on a synthetic task: ``python demo.py -c config.yaml``.

The same as ``python -m gptdecoder train -c config.yaml``; also runs under
``torchrun --standalone --nproc_per_node=2 demo.py -c config.yaml`` for DDP.
"""
import argparse
import sys

from gptdecoder.commands import train
from gptdecoder.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train.add_arguments(parser)
    args = parser.parse_args()
    try:
        return train.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be written or read
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
