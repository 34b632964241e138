"""The two exceptions of the data pipeline.

`DataError` is for the person running the program: its message is one line that
says what is wrong and how to fix it, so the CLI can print it as is.
`UnreadableImage` is for one file: its message is the short reason that ends up
in the skipped-files report.
"""


class DataError(Exception):
    """A data problem the user must fix; str() is one line: what is wrong and what to do."""


class UnreadableImage(Exception):
    """decode_image could not turn a file into pixels; str() is the short reason."""
