"""decode_image / decode_many / find_image_files on tiny real files of every kind.

torchvision's own decoder (torchvision.io, libpng / libjpeg-turbo) and resize are the
reference the decoded pixels are checked against.
"""

import os
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, read_file
from torchvision.io import decode_image as torchvision_decode

from datasets import DataError, UnreadableImage, decode_image, decode_many, find_image_files
from datasets.decode import PARALLEL_MIN_PATHS
from tests.image_factory import (
    make_directory_named_image,
    write_empty,
    write_gray16_png,
    write_image,
    write_jpeg_header_only,
    write_random_bytes,
    write_text_as_jpg,
    write_thumbs_db,
    write_truncated_jpeg,
)

# torchvision 0.29 deprecates its decoders in favour of torchcodec; they still are the reference.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
RED = (200, 30, 40)


def torchvision_reference(path, image_size: int) -> torch.Tensor:
    """torchvision's decode, shorter side resized to image_size (antialiased), centre crop."""
    pixels = torchvision_decode(read_file(str(path)), mode=ImageReadMode.RGB)
    return F.center_crop(F.resize(pixels, image_size, antialias=True), [image_size, image_size])


def gradient(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: red rises left to right, green top to bottom."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height - 2)], -1
    )


@pytest.mark.parametrize(("fmt", "tolerance"), [("PNG", 0), ("JPEG", 2)])
def test_pixels_equal_torchvision_decode_when_no_resize_is_needed(tmp_path, fmt, tolerance):
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / f"noise.{fmt.lower()}"
    Image.fromarray(noise).save(path, format=fmt, quality=90)
    ours = decode_image(path, 16)
    expected = torchvision_decode(read_file(str(path)), mode=ImageReadMode.RGB)
    assert ours.dtype == torch.uint8 and ours.shape == expected.shape == (3, 16, 16)
    assert (ours.int() - expected.int()).abs().max() <= tolerance
    if fmt == "PNG":  # lossless: exactly the pixels written, channels first
        assert torch.equal(ours, torch.from_numpy(noise).permute(2, 0, 1))


@pytest.mark.parametrize("size", [(60, 40), (40, 60), (96, 64)])  # wide, tall, JPEG draft scale 1/4
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_resize_and_centre_crop_match_torchvision(tmp_path, fmt, size):
    path = tmp_path / f"gradient.{fmt.lower()}"
    Image.fromarray(gradient(*size).astype(np.uint8)).save(path, format=fmt, quality=95)
    difference = (decode_image(path, 16).int() - torchvision_reference(path, 16).int()).abs()
    limit = (0.5, 1) if fmt == "PNG" else (1.5, 8)  # JPEG: decoded at reduced scale, then resized
    assert difference.float().mean() <= limit[0] and difference.max() <= limit[1]


@pytest.mark.parametrize(
    ("name", "fmt", "mode", "tolerance"),
    [
        ("rgb.jpg", "JPEG", "RGB", 6),
        ("png_named.jpg", "PNG", "RGB", 0),  # content decides, not the extension
        ("gif_named.jpg", "GIF", "RGB", 12),  # GIF palette quantises the colour
        ("photo.webp", "WEBP", "RGB", 6),
        ("photo.bmp", "BMP", "RGB", 0),
        ("cmyk.jpg", "JPEG", "CMYK", 6),
        ("palette.png", "PNG", "P", 12),
        ("rgba_opaque.png", "PNG", "RGBA", 0),
    ],
)
def test_formats_and_modes_decode_to_rgb_uint8(tmp_path, name, fmt, mode, tolerance):
    path = write_image(tmp_path / name, RED, fmt=fmt, mode=mode)
    pixels = decode_image(path, 16)
    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.uint8
    mean_color = pixels.float().mean(dim=(1, 2))
    assert torch.allclose(mean_color, torch.tensor(RED, dtype=torch.float32), atol=tolerance)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    pixels = decode_image(write_image(tmp_path / "gray.png", RED, fmt="PNG", mode="L"), 8)
    luminance = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])
    assert (pixels == luminance).all()


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    # Clipping would turn 4112 (= 16 * 257) into 255, white; scaling gives 16.
    for value, expected in [(4112, 16), (32896, 128), (65535, 255), (0, 0)]:
        path = write_gray16_png(tmp_path / f"g{value}.png", value)
        assert Image.open(path).mode.startswith("I")
        assert (decode_image(path, 8) == expected).all(), value


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = RED
    rgba[:, 8:, 3] = 255  # left half fully transparent, right half opaque red
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "half.png")
    pixels = decode_image(tmp_path / "half.png", 16)
    assert (pixels[:, :, :7] == 255).all()
    assert pixels[:, :, 9:].float().mean(dim=(1, 2)).tolist() == pytest.approx(RED, abs=1)


def test_gray_with_alpha_and_palette_transparency_become_white(tmp_path):
    Image.new("LA", (8, 8), (10, 0)).save(tmp_path / "la.png")
    assert (decode_image(tmp_path / "la.png", 8) == 255).all()
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([*RED, 0, 0, 0])
    palette.save(tmp_path / "transparent.gif", transparency=0)
    assert (decode_image(tmp_path / "transparent.gif", 8) == 255).all()


def test_exif_orientation_6_rotates(tmp_path):
    # 64 wide x 32 high: left half red, right half blue. Orientation 6 means
    # "turn 90 degrees clockwise to view", giving 32 x 64 with red on top.
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)
    pixels[:, 32:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", quality=95, exif=exif.tobytes())

    decoded = decode_image(tmp_path / "rotated.jpg", 32)  # (3, 32, 32) of the middle square
    top_right, bottom_left = decoded[:, 2, 29], decoded[:, 29, 2]
    assert top_right[0] > 200 and top_right[2] < 50  # red on top, also at the right
    assert bottom_left[2] > 200 and bottom_left[0] < 50  # blue below, also at the left


def test_shorter_side_resized_then_centre_cropped(tmp_path):
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20] = (0, 255, 0)
    pixels[:, 20:40] = (255, 0, 0)
    pixels[:, 40:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    decoded = decode_image(tmp_path / "wide.png", 10)
    assert decoded.shape == (3, 10, 10)
    # Only the red middle third; the filter may blend a little of the
    # neighbours into the outermost columns, which is what antialiasing does.
    inner = decoded[:, :, 1:-1]
    assert (inner[0] == 255).all() and (inner[1:] == 0).all()
    assert (decoded[0] > 200).all()


def test_big_jpeg_decodes_to_requested_size(tmp_path):
    path = write_image(tmp_path / "big.jpg", RED, size=(2400, 1600), noise=10)
    decoded = decode_image(path, 32)
    assert decoded.shape == (3, 32, 32)
    assert decoded.float().mean(dim=(1, 2)).tolist() == pytest.approx(RED, abs=6)


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        (write_empty, "empty.jpg", "empty file"),
        (write_truncated_jpeg, "truncated.jpg", "truncated"),
        (write_jpeg_header_only, "header.jpg", "truncated"),
        (write_text_as_jpg, "text.jpg", "not an image"),
        (write_random_bytes, "random.jpg", "not an image"),
        (write_thumbs_db, "Thumbs.db", "not an image"),
        (make_directory_named_image, "folder.jpg", "is a directory"),
    ],
)
def test_broken_files_raise_unreadable_image_with_reason(tmp_path, make, name, reason):
    path = make(tmp_path / name)
    with pytest.raises(UnreadableImage, match=reason):
        decode_image(path, 16)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImage, match="cannot read"):
        decode_image(tmp_path / "gone.jpg", 16)


@pytest.mark.parametrize("limit", [100, 500])  # 768 pixels: error above 2x limit, warning below
def test_decompression_bomb_is_unreadable(tmp_path, monkeypatch, limit):
    path = write_image(tmp_path / "bomb.png", RED, size=(32, 24), fmt="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    filters_before = list(warnings.filters)
    with pytest.raises(UnreadableImage, match=r"decompression bomb \(768 pixels\)"):
        decode_image(path, 8)
    assert warnings.filters == filters_before  # the warning is an error only inside decode_image


def test_decode_many_keeps_order_and_reports_reasons(tmp_path):
    paths = [
        str(write_image(tmp_path / "a.jpg", RED)),
        str(write_empty(tmp_path / "b.jpg")),
        str(write_image(tmp_path / "c.png", (0, 0, 255), fmt="PNG")),
    ]
    results = list(decode_many(paths, 8, workers=1))
    assert [path for path, _, _ in results] == paths
    assert results[1][1] is None and results[1][2] == "empty file"
    assert results[2][1].shape == (3, 8, 8) and results[2][1][2, 0, 0] == 255
    assert results[0][2] is None


def test_decode_many_in_parallel_matches_in_process(tmp_path):
    paths = []
    for i in range(PARALLEL_MIN_PATHS):  # enough files to use the process pool
        if i % 50 == 7:
            paths.append(str(write_text_as_jpg(tmp_path / f"{i}.jpg")))
        else:
            paths.append(str(write_image(tmp_path / f"{i}.png", (i, 255 - i, 9), (8, 8), "PNG")))
    parallel = list(decode_many(paths, 4, workers=2))
    serial = list(decode_many(paths, 4, workers=1))
    assert [p for p, _, _ in parallel] == paths
    for (_, a, reason_a), (_, b, reason_b) in zip(parallel, serial, strict=True):
        assert reason_a == reason_b
        assert (a is None and b is None) or torch.equal(a, b)
    assert sum(reason is not None for _, _, reason in parallel) == 4


def test_find_image_files(tmp_path):
    top = write_image(tmp_path / "single.png", RED, fmt="PNG")
    folder = tmp_path / "folder"
    write_image(folder / "b.jpg", RED)
    write_image(folder / "sub" / "a.webp", RED, fmt="WEBP")
    write_text_as_jpg(folder / "notes.txt")  # listed: content decides later
    write_image(folder / ".hidden.jpg", RED)
    write_image(folder / ".cache" / "c.jpg", RED)
    found = find_image_files([str(top), str(folder)])
    assert found == [
        str(top),
        os.path.join(folder, "b.jpg"),
        os.path.join(folder, "notes.txt"),
        os.path.join(folder, "sub", "a.webp"),
    ]
    with pytest.raises(DataError, match="does not exist"):
        find_image_files([str(tmp_path / "missing")])
