"""Tiny REAL image files for tests, written with PIL: every format, mode, kind of
breakage and folder layout the data pipeline must handle.

Cats are bright reddish and dogs dark bluish, with seeded per-image noise, so a
linear model can learn the classes and no two photos are byte-identical.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

CAT_COLOR = (220, 90, 70)
DOG_COLOR = (40, 50, 120)
NOISE = 25  # +- per channel: distinct files, classes still far apart


def write_image(
    path: str | Path,
    color: tuple[int, int, int],
    size: tuple[int, int] = (32, 24),
    fmt: str = "JPEG",
    mode: str = "RGB",
    noise: int = 0,
    seed: int = 0,
) -> Path:
    """A solid `color` image of `size` (width, height), optionally noisy, saved as
    `fmt` in `mode` whatever the file's extension says."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.int16)
    pixels[:] = color
    if noise:
        pixels += np.random.default_rng(seed).integers(-noise, noise + 1, size=pixels.shape, dtype=np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


def write_gray16_png(path: str | Path, value: int, size: tuple[int, int] = (16, 16)) -> Path:
    """A 16-bit greyscale PNG filled with `value` in 0..65535."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, dtype=np.uint16)).save(path, format="PNG")
    return path


def write_empty(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_truncated_jpeg(path: str | Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A noisy JPEG cut off halfway through its pixel data (header intact)."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_jpeg_header_only(path: str | Path) -> Path:
    """JPEG magic bytes followed by junk: a download cut off after a few bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


def write_random_bytes(path: str | Path, count: int = 2048, seed: int = 0) -> Path:
    """`count` seeded random bytes: a file named like a photo that is no image at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size=count, dtype=np.uint8).tobytes())
    return path


def write_text_as_jpg(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a photo\n")
    return path


def write_thumbs_db(path: str | Path) -> Path:
    """A file named Thumbs.db starting with the OLE2 magic, like Windows' thumbnail cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    return path


def make_directory_named_image(path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_layout(
    root: str | Path,
    layout: str,
    n_per_class: int = 8,
    size: tuple[int, int] = (40, 32),
    seed: int = 0,
    annotations: bool = False,
) -> Path:
    """A folder of learnable cat and dog photos in `layout`; returns root.

    n_per_class photos of each class go to the training part; split_folders also
    gets max(1, n_per_class // 2) per class in validation/. With annotations,
    oxford_pet gets annotations/trainval.txt and test.txt putting every fourth
    photo of each breed in test.
    """
    root = Path(root)
    names = layout_files(layout, n_per_class)
    for index, (relative, label) in enumerate(names):
        color = CAT_COLOR if label == 1 else DOG_COLOR
        write_image(root / relative, color, size=size, noise=NOISE, seed=seed * 100_003 + index)
    if layout == "oxford_pet" and annotations:
        stems = [Path(relative).stem for relative, _ in names]
        test = [stem for stem in stems if int(stem.rsplit("_", 1)[1]) % 4 == 0]
        trainval = [stem for stem in stems if stem not in test]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / "test.txt").write_text("".join(f"{s} 1 1 1\n" for s in test))
        (root / "annotations" / "trainval.txt").write_text("".join(f"{s} 1 1 1\n" for s in trainval))
    return root


def layout_files(layout: str, n: int) -> list[tuple[str, int]]:
    """(relative path, label) of every photo make_layout writes; label 1 = cat, the task's
    convention, spelled out here rather than imported so a flipped constant is caught."""
    if layout == "class_folders":  # Microsoft PetImages
        return [(f"Cat/{i}.jpg", 1) for i in range(n)] + [(f"Dog/{i}.jpg", 0) for i in range(n)]
    if layout == "split_folders":  # Google cats_and_dogs_filtered
        held_out = max(1, n // 2)
        return (
            [(f"train/cats/cat.{i}.jpg", 1) for i in range(n)]
            + [(f"train/dogs/dog.{i}.jpg", 0) for i in range(n)]
            + [(f"validation/cats/cat.{n + i}.jpg", 1) for i in range(held_out)]
            + [(f"validation/dogs/dog.{n + i}.jpg", 0) for i in range(held_out)]
        )
    if layout == "kaggle_flat":  # Kaggle Dogs vs. Cats train.zip
        return [(f"train/cat.{i}.jpg", 1) for i in range(n)] + [(f"train/dog.{i}.jpg", 0) for i in range(n)]
    if layout == "oxford_pet":  # Oxford-IIIT Pet: capitalised breed = cat
        return [(f"images/Abyssinian_{i + 1}.jpg", 1) for i in range(n)] + [
            (f"images/american_bulldog_{i + 1}.jpg", 0) for i in range(n)
        ]
    raise ValueError(f"unknown layout {layout}")
