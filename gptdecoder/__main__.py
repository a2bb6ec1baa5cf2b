import sys

from gptdecoder.cli import main

sys.exit(main())
