"""The command-line commands, one module per command: add_arguments(parser) and run(args) -> int.

``gptdecoder/cli.py`` maps each command name to its module here. A command parses
nothing itself (cli.py hands it the parsed ``args``), reads runs through
``gptdecoder.runs``, calls the library (``gptdecoder.lab`` for the attention lab) and
prints; bad input raises ``gptdecoder.errors.UserError``, which cli.py turns into one
``error: ...`` line and exit code 2.
"""
