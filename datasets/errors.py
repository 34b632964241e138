"""The two exceptions of the data pipeline."""


class DataError(Exception):
    """A data problem the user must fix; str() is one line: what is wrong and what to do, so the
    CLI can print it as is."""


class UnreadableImage(Exception):
    """decode_image could not turn a file into pixels; str() is the short reason that ends up in
    the skipped-files report."""
