"""Folder layouts of cats-vs-dogs photo sets -> sorted, labelled file entries.

A layout only says where files are and what label each gets (cat = 1, dog = 0);
whether a file is really an image is decided later by decoding it, so every
regular file is listed (except dot-files such as .DS_Store).
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from datasets.errors import DataError
from models.labels import CAT, DOG

LAYOUTS = ("class_folders", "split_folders", "kaggle_flat", "oxford_pet")
LAYOUT_SHAPES = {
    "class_folders": "cat*/ and dog*/ folders of photos (Microsoft PetImages: Cat/, Dog/)",
    "split_folders": "train/ plus validation/, val/ or test/, each with cat*/ and dog*/ folders",
    "kaggle_flat": "train/cat.0.jpg, train/dog.0.jpg (label from the file name)",
    "oxford_pet": "images/Breed_Name_1.jpg (capitalised breed = cat, lower-case = dog)",
}
HELD_OUT_FOLDERS = ("validation", "val", "test")
# A folder with one of these names is a broken "photo", not a folder to search.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
KAGGLE_NAME = re.compile(r"^(cat|dog)\.", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One file of the data set: `path` is relative to the root, in posix form."""

    path: str
    label: int
    source_split: str  # "train" or "test": a held-out folder or list of the source


def resolve_layout(root: str | os.PathLike, layout: str = "auto") -> str:
    """`layout`, checked against the folder, or the detected layout for "auto"."""
    if layout == "auto":
        return detect_layout(root)
    if layout not in LAYOUTS:
        raise DataError(f"unknown data.layout '{layout}'; choose auto or one of {', '.join(LAYOUTS)}")
    if not _MATCHERS[layout](Path(root)):
        raise DataError(
            f"data.root '{root}' does not look like layout {layout} "
            f"({LAYOUT_SHAPES[layout]}); pass --data.layout auto or fix --data.root"
        )
    return layout


def detect_layout(root: str | os.PathLike) -> str:
    root = Path(root)
    for layout in LAYOUTS:
        if _MATCHERS[layout](root):
            return layout
    shapes = "; ".join(f"{name}: {shape}" for name, shape in LAYOUT_SHAPES.items())
    raise DataError(
        f"cannot recognise the layout of data.root '{root}'; expected one of {shapes}; "
        "point --data.root at such a folder or force one with --data.layout"
    )


def list_entries(root: str | os.PathLike, layout: str) -> list[Entry]:
    root = Path(root)
    layout = resolve_layout(root, layout)
    if layout == "class_folders":
        entries = _class_folder_entries(root, root, "train")
    elif layout == "split_folders":
        folders = _subfolders(root)
        entries = _class_folder_entries(root, folders["train"], "train")
        entries += _class_folder_entries(root, _held_out_folder(root), "test")
    elif layout == "kaggle_flat":
        entries = [
            Entry(_relative(root, path), CAT if path.name.lower().startswith("cat") else DOG, "train")
            for path in _files_under(_subfolders(root)["train"])
            if KAGGLE_NAME.match(path.name)
        ]
    else:
        entries = _oxford_entries(root)
    return sorted(entries, key=lambda entry: entry.path)


def _class_folder_entries(root: Path, parent: Path, source_split: str) -> list[Entry]:
    entries = []
    for name, folder in _subfolders(parent).items():
        label = _class_of_folder(name)
        if label is not None:
            entries += [Entry(_relative(root, p), label, source_split) for p in _files_under(folder)]
    return entries


def _oxford_entries(root: Path) -> list[Entry]:
    test_stems = _annotation_stems(root / "annotations" / "test.txt")
    # Without both lists the split is ours to make; a lone test.txt is ignored
    # rather than half-trusted.
    if not (root / "annotations" / "trainval.txt").is_file():
        test_stems = set()
    entries = []
    for path in _files_under(_subfolders(root)["images"]):
        first = path.name[0]
        if not first.isalpha():
            continue  # no breed name, so no label
        split = "test" if path.name.split(".")[0] in test_stems else "train"
        entries.append(Entry(_relative(root, path), CAT if first.isupper() else DOG, split))
    return entries


def _annotation_stems(list_file: Path) -> set[str]:
    if not list_file.is_file():
        return set()
    lines = list_file.read_text().splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below `folder`; folders named like images count as files.

    A link to `folder` or a folder above it (`ln -s . loop`, `ln -s .. up`) is listed as a
    file, not followed: decoding then skips it and skipped.csv names it. Followed, it would
    list every photo again at each level until the OS refuses the path (ELOOP).
    """
    real = Path(os.path.realpath(folder))
    found = []
    for item in sorted(os.scandir(folder), key=lambda item: item.name):
        if item.name.startswith("."):
            continue
        try:
            is_folder = item.is_dir() and not item.name.lower().endswith(IMAGE_SUFFIXES)
        except OSError:  # a link to itself, or links that lead round: the OS refused it already
            is_folder = False
        if is_folder and not real.is_relative_to(os.path.realpath(item.path)):
            found += _files_under(Path(item.path))
        else:
            found.append(Path(item.path))
    return found


def _subfolders(folder: Path) -> dict[str, Path]:
    """Visible subfolders by lower-case name, so Train/ and TRAIN/ both work."""
    if not folder.is_dir():
        return {}
    return {
        item.name.lower(): Path(item.path)
        for item in sorted(os.scandir(folder), key=lambda item: item.name)
        if item.is_dir() and not item.name.startswith(".")
    }


def _class_of_folder(name: str) -> int | None:
    name = name.lower()
    if name.startswith("cat"):
        return CAT
    if name.startswith("dog"):
        return DOG
    return None


def _has_class_folders(folder: Path | None) -> bool:
    return folder is not None and any(_class_of_folder(n) is not None for n in _subfolders(folder))


def _held_out_folder(root: Path) -> Path | None:
    folders = _subfolders(root)
    held_out = [folders[name] for name in HELD_OUT_FOLDERS if _has_class_folders(folders.get(name))]
    if len(held_out) > 1:
        # Only one held-out set fits the train/test source split; picking one
        # silently would drop or mislabel the other.
        names = ", ".join(f"{p.name}/" for p in held_out)
        raise DataError(f"data.root '{root}' has several held-out folders ({names}); keep one")
    return held_out[0] if held_out else None


def _is_split_folders(root: Path) -> bool:
    return _has_class_folders(_subfolders(root).get("train")) and _held_out_folder(root) is not None


def _is_kaggle_flat(root: Path) -> bool:
    train = _subfolders(root).get("train")
    return train is not None and any(KAGGLE_NAME.match(name) for name in os.listdir(train))


def _is_oxford_pet(root: Path) -> bool:
    images = _subfolders(root).get("images")
    return images is not None and any(
        re.match(r"^[A-Za-z]+(_[A-Za-z]+)*_\d+\.", name) for name in os.listdir(images)
    )


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


_MATCHERS = {
    "class_folders": _has_class_folders,
    "split_folders": _is_split_folders,
    "kaggle_flat": _is_kaggle_flat,
    "oxford_pet": _is_oxford_pet,
}
