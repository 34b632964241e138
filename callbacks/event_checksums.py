"""TensorBoard event files checksummed in C instead of in pure Python.

Every record TensorBoard writes carries two masked CRC32C checksums. Without TensorFlow
installed, `tensorboard` computes them in pure Python (~140 ns a byte on this machine),
on its writer thread and holding the GIL: for a snapshot's PNGs (~1.2 MB as they were
then compressed) the training thread waited ~100 ms (measured inside train.py: the
probe-image grid took 90-150 ms of wall time for 15-20 ms of its own CPU time; a whole
snapshot 262 ms, 158 ms with this module). google-crc32c computes
the same checksum in C, in microseconds. tensorboardX made the same switch
(lanpa/tensorboardX#428).
"""

import google_crc32c
from tensorboard.summary.writer import record_writer

_MASK_DELTA = 0xA282EAD8  # TFRecord's checksum mask (tensorflow/core/lib/hash/crc32c.h)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C of `data`, as TFRecord files store it."""
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def use_fast_event_checksums() -> bool:
    """Make TensorBoard's record writer use `masked_crc32c`; False (and nothing changed) where
    google-crc32c has no C extension, whose pure-Python fallback would be no faster."""
    if google_crc32c.implementation != "c":
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True
