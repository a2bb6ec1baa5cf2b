"""The one exception type the ``bpe`` package raises for bad input."""


class BPEError(ValueError):
    """A vocabulary file, token id, vocabulary size or option is invalid.

    It subclasses ``ValueError`` so callers that already catch ``ValueError``
    keep working; the message always names the offending file or value.
    """
