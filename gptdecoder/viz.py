"""``python -m gptdecoder.viz --run DIR --out DIR``: the attention lab's pictures (same as the ``pictures`` command)."""
import sys

from gptdecoder.commands.pictures import main

if __name__ == "__main__":
    sys.exit(main())
