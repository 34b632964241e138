"""Any photo file -> uint8 tensor (3, S, S): shorter side to S, then a centre crop.

The format is decided by the file's content (PIL), never by its extension: real
folders hold PNGs and GIFs named .jpg, and Thumbs.db files next to the photos.
Every way a file can fail becomes `UnreadableImage(reason)`, so a caller can skip
the file and report why instead of crashing half-way through 25,000 photos.
"""

import multiprocessing
import os
import re
import signal
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from datasets.errors import DataError, UnreadableImage

# Below this many files a process pool costs more to start than it saves
# (each decode of a small photo takes a few milliseconds).
PARALLEL_MIN_PATHS = 200
WHITE = (255, 255, 255, 255)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_image(path: str | os.PathLike, image_size: int) -> torch.Tensor:
    """Decode one image file to a uint8 tensor (3, image_size, image_size).

    Raises:
        UnreadableImage: the file is empty, a directory, not an image, truncated,
            a decompression bomb, or otherwise undecodable; str() is the reason.
    """
    return _as_tensor(_decode_array(os.fspath(path), image_size))


def decode_many(
    paths: Sequence[str], image_size: int, workers: int = 0, progress: bool = False
) -> Iterator[tuple[str, torch.Tensor | None, str | None]]:
    """Decode many files, yielding (path, tensor or None, reason or None) in input order.

    workers=0 means one process per CPU core. Unreadable files yield a reason
    instead of raising, so one bad photo never stops a run.
    """
    workers = workers or os.cpu_count() or 1
    jobs = [(os.fspath(path), image_size) for path in paths]
    bar = tqdm(total=len(jobs), desc="decoding", unit="img", disable=not progress)
    with bar, ExitStack() as stack:
        if workers > 1 and len(jobs) >= PARALLEL_MIN_PATHS:
            # The workers take SIGTERM's default (end at once) whatever handler their parent set
            # (datasets/cache.py sets one while it builds): the pool ends them with SIGTERM, and
            # a Python handler never runs in a worker blocked on a lock, which would hang the pool.
            reset = (signal.SIGTERM, signal.SIG_DFL)
            pool = stack.enter_context(multiprocessing.get_context().Pool(workers, signal.signal, reset))
            # Enough chunks per worker to balance uneven photo sizes, big enough
            # chunks that pickling overhead stays small.
            results = pool.imap(_decode_job, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8))))
        else:
            results = map(_decode_job, jobs)
        for path, pixels, reason in results:
            bar.update()
            yield path, None if pixels is None else _as_tensor(pixels), reason


def find_image_files(paths: Sequence[str]) -> list[str]:
    """Files to predict on: each file as given, each folder searched recursively.

    Hidden files and folders are skipped; nothing is filtered by extension
    because the content decides whether a file is an image.

    Raises:
        DataError: a path does not exist.
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
                files.extend(
                    os.path.join(folder, name)
                    for name in sorted(names)
                    if not name.startswith(".") and os.path.isfile(os.path.join(folder, name))
                )
        elif os.path.exists(path):
            files.append(os.fspath(path))
        else:
            raise DataError(f"'{path}' does not exist; pass existing image files or folders")
    return files


def _decode_job(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str | None]:
    # Workers send numpy arrays back, not tensors: torch would pass each tensor
    # through shared memory, one file descriptor per image.
    path, image_size = job
    try:
        return path, _decode_array(path, image_size), None
    except UnreadableImage as error:
        return path, None, str(error)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (S, S, 3) -> (3, S, S)


def _decode_array(path: str, image_size: int) -> np.ndarray:
    if os.path.isdir(path):
        raise UnreadableImage("is a directory")
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImage("empty file")
    except OSError as error:
        raise UnreadableImage(f"cannot read ({error.strerror or error})") from error
    # Only here is a decompression-bomb warning an error: PIL's default merely
    # warns between MAX_IMAGE_PIXELS and twice that, and a 180-megapixel "photo"
    # would stall a worker for minutes.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale, never
                # below image_size, so a 4000 px photo costs what a 500 px one does.
                image.draft("RGB", (image_size, image_size))
                image.load()  # inside the try: truncation surfaces only when pixels are read
                image = ImageOps.exif_transpose(image)
                image = _to_rgb(image)
                return _resize_centre_crop(image, image_size)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            count = pixels.group(1) if pixels else "too many"
            raise UnreadableImage(f"decompression bomb ({count} pixels)") from error
        except UnidentifiedImageError as error:
            raise UnreadableImage("not an image (cannot identify format)") from error
        except Exception as error:
            # PIL's decoders raise many types on corrupt data (OSError,
            # SyntaxError, ValueError, struct.error, EOFError...); all mean
            # "skip this file", and truncation shows only in the message.
            message = str(error)
            if "truncated" in message.lower() or "broken data stream" in message:
                raise UnreadableImage("truncated image") from error
            raise UnreadableImage(f"cannot decode ({type(error).__name__}: {message})") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        # 16-bit greyscale: 0..65535 -> 0..255 by scaling, not clipping, which
        # would turn almost every pixel white.
        values = np.asarray(image, dtype=np.float64)
        eight_bit = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(eight_bit, mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent pixels often hold junk colour; show them as white, the way
        # a browser shows the photo on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _resize_centre_crop(image: Image.Image, image_size: int) -> np.ndarray:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # One resize of the central square: PIL filters over the whole source
    # footprint when shrinking, so this is antialiased.
    square = image.resize(
        (image_size, image_size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
    )
    return np.array(square, dtype=np.uint8)  # (S, S, 3), a writable copy
