"""What we write to TensorBoard our own way reads back with TensorBoard's reader: checksums, PNGs."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_masked_crc32c
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard import SummaryWriter

from callbacks.event_checksums import masked_crc32c, use_fast_event_checksums
from callbacks.png_summary import add_png


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 255, 4096, 100_003])
def test_masked_crc32c_is_tensorboards(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert masked_crc32c(data) == tensorboard_masked_crc32c(data)


def test_event_file_reads_back_and_a_flipped_byte_is_caught(tmp_path):
    assert use_fast_event_checksums(), "google-crc32c has no C extension here"
    assert record_writer.masked_crc32c is masked_crc32c
    writer = SummaryWriter(str(tmp_path))
    picture = np.random.default_rng(0).integers(0, 256, (3, 40, 30), dtype=np.uint8)
    writer.add_image("picture", picture, 7)
    writer.add_scalar("loss", 0.25, 7)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(7, 0.25)]
    assert (events.Images("picture")[0].width, events.Images("picture")[0].height) == (30, 40)

    # TensorBoard's reader checks every record's checksum: one flipped byte fails it.
    (path,) = [tmp_path / name for name in os.listdir(tmp_path)]
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # inside the last record's payload
    path.write_bytes(bytes(raw))
    reader = PyRecordReader_New(str(path))
    with pytest.raises(errors.DataLossError):
        while True:
            reader.GetNext()


def test_add_png_stores_the_exact_pixels(tmp_path):
    picture = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 21, 34), dtype=np.uint8))
    writer = SummaryWriter(str(tmp_path))
    add_png(writer, "probe/p_cat", picture, 12)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (logged,) = events.Images("probe/p_cat")
    assert (logged.step, logged.width, logged.height) == (12, 34, 21)
    decoded = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))  # (H, W, 3)
    np.testing.assert_array_equal(decoded, picture.permute(1, 2, 0).numpy())
