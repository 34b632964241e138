"""Folder layouts: detection, labels (cat = 1), source splits, what is listed, errors."""

import pytest

from datasets import LAYOUTS, DataError
from datasets.cache import ensure_cache
from datasets.layouts import detect_layout, list_entries, resolve_layout
from models.labels import CAT, DOG
from tests.image_factory import (
    layout_files,
    make_directory_named_image,
    make_layout,
    write_image,
    write_thumbs_db,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)
SMALL = (8, 8)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_cat_is_the_positive_class():
    assert (CAT, DOG) == (1, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_every_photo_labelled(tmp_path, layout):
    root = make_layout(tmp_path / "pets", layout, n_per_class=3, size=SMALL)
    assert detect_layout(root) == layout
    assert resolve_layout(root, layout) == layout  # forcing the right layout is accepted
    entries = list_entries(root, "auto")
    # Exactly the files written, each with the label its folder or name gives it.
    assert sorted((e.path, e.label) for e in entries) == sorted(layout_files(layout, 3))
    assert [e.path for e in entries] == sorted(e.path for e in entries)
    assert all((root / e.path).is_file() and not e.path.startswith("/") for e in entries)
    assert {e.label for e in entries} == {CAT, DOG}


@pytest.mark.parametrize(
    ("cat_folder", "dog_folder"), [("Cat", "Dog"), ("cats", "DOGS"), ("CAT", "dog"), ("Cats", "Dogs")]
)
def test_class_folders_any_case_and_plural_other_folders_ignored(tmp_path, cat_folder, dog_folder):
    write_image(tmp_path / cat_folder / "a.jpg", RED, SMALL)
    write_image(tmp_path / dog_folder / "b.jpg", BLUE, SMALL)
    write_image(tmp_path / "holiday" / "c.jpg", BLUE, SMALL)  # not a class: ignored
    write_image(tmp_path / "loose.jpg", BLUE, SMALL)  # no class folder: ignored
    assert detect_layout(tmp_path) == "class_folders"
    entries = list_entries(tmp_path, "auto")
    assert [(e.path, e.label, e.source_split) for e in entries] == sorted(
        [(f"{cat_folder}/a.jpg", CAT, "train"), (f"{dog_folder}/b.jpg", DOG, "train")]
    )


def test_broken_files_are_entries_but_dot_files_are_not(tmp_path):
    """Whether a file is an image is decided by decoding it later, so every visible file is
    listed; hidden files (.DS_Store) and hidden folders are not."""
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=2, size=SMALL)
    write_thumbs_db(root / "Cat" / "Thumbs.db")
    make_directory_named_image(root / "Dog" / "666.jpg")
    (root / "Cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / "Cat" / ".thumbnails" / "hidden.jpg", RED, SMALL)
    write_image(root / "Cat" / "nested" / "deep.jpg", RED, SMALL)
    labels = {e.path: e.label for e in list_entries(root, "class_folders")}
    assert labels == {
        "Cat/0.jpg": CAT,
        "Cat/1.jpg": CAT,
        "Cat/Thumbs.db": CAT,
        "Cat/nested/deep.jpg": CAT,
        "Dog/0.jpg": DOG,
        "Dog/1.jpg": DOG,
        "Dog/666.jpg": DOG,  # a directory named like a photo: reported when decoding
    }


def test_a_link_back_up_the_tree_is_listed_once_and_skipped_with_a_reason(tmp_path):
    """`ln -s . Cat/loop` made training fail with ELOOP; predict.py's os.walk never followed it."""
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=2, size=SMALL)
    (root / "Cat" / "loop").symlink_to(".")
    (root / "Dog" / "up").symlink_to("..")
    (root / "Dog" / "self").symlink_to("self")  # a link to itself: ELOOP on the first look
    elsewhere = tmp_path / "more_dogs"
    write_image(elsewhere / "far.jpg", BLUE, SMALL)
    (root / "Dog" / "more").symlink_to(elsewhere)  # a link to a folder outside: followed
    entries = list_entries(root, "class_folders")
    assert [e.path for e in entries] == [
        "Cat/0.jpg", "Cat/1.jpg", "Cat/loop",
        "Dog/0.jpg", "Dog/1.jpg", "Dog/more/far.jpg", "Dog/self", "Dog/up",
    ]  # fmt: skip
    cache = ensure_cache(root, entries, 8, tmp_path / "cache", "class_folders")
    assert [path for path, _ in cache.skipped] == ["Cat/loop", "Dog/self", "Dog/up"]
    assert len(cache.paths) == 5


@pytest.mark.parametrize("held_out", ["validation", "val", "test", "Validation"])
def test_split_folders_mark_the_held_out_folder_as_test(tmp_path, held_out):
    for split in ("train", held_out):
        write_image(tmp_path / split / "cats" / f"{split}_cat.jpg", RED, SMALL)
        write_image(tmp_path / split / "dogs" / f"{split}_dog.jpg", BLUE, SMALL)
    assert detect_layout(tmp_path) == "split_folders"
    entries = list_entries(tmp_path, "auto")
    assert sorted((e.path, e.label, e.source_split) for e in entries) == sorted(
        [
            ("train/cats/train_cat.jpg", CAT, "train"),
            ("train/dogs/train_dog.jpg", DOG, "train"),
            (f"{held_out}/cats/{held_out}_cat.jpg", CAT, "test"),
            (f"{held_out}/dogs/{held_out}_dog.jpg", DOG, "test"),
        ]
    )


def test_split_folders_with_two_held_out_folders_is_a_one_line_error(tmp_path):
    for split in ("train", "val", "test"):
        write_image(tmp_path / split / "cats" / "a.jpg", RED, SMALL)
    with pytest.raises(DataError) as error:
        detect_layout(tmp_path)
    message = one_line(error)
    assert "several held-out folders" in message and "val/" in message and "test/" in message
    assert "keep one" in message


def test_kaggle_flat_labels_come_from_the_file_name(tmp_path):
    root = make_layout(tmp_path / "kaggle", "kaggle_flat", n_per_class=2, size=SMALL)
    write_image(root / "train" / "Cat.7.JPG", RED, SMALL)  # any case
    (root / "train" / "readme.txt").write_text("not a photo of either class\n")
    write_image(root / "train" / "catalogue.jpg", RED, SMALL)  # "cat" but not "cat.": no label
    write_image(root / "test1" / "1.jpg", RED, SMALL)  # Kaggle's unlabelled test set
    assert detect_layout(root) == "kaggle_flat"
    labels = {e.path: e.label for e in list_entries(root, "kaggle_flat")}
    assert labels == {
        "train/Cat.7.JPG": CAT,
        "train/cat.0.jpg": CAT,
        "train/cat.1.jpg": CAT,
        "train/dog.0.jpg": DOG,
        "train/dog.1.jpg": DOG,
    }
    assert {e.source_split for e in list_entries(root, "auto")} == {"train"}


def test_oxford_capitalised_breed_is_a_cat(tmp_path):
    for name in ("Abyssinian_1.jpg", "British_Shorthair_2.jpg", "american_bulldog_3.jpg", "pug_4.jpg"):
        write_image(tmp_path / "images" / name, RED, SMALL)
    write_image(tmp_path / "images" / "_5.jpg", RED, SMALL)  # no breed: no label, not listed
    assert detect_layout(tmp_path) == "oxford_pet"
    labels = {e.path: e.label for e in list_entries(tmp_path, "auto")}
    assert labels == {
        "images/Abyssinian_1.jpg": CAT,
        "images/British_Shorthair_2.jpg": CAT,
        "images/american_bulldog_3.jpg": DOG,
        "images/pug_4.jpg": DOG,
    }


def test_oxford_annotation_lists_decide_the_source_split(tmp_path):
    root = make_layout(tmp_path / "oxford", "oxford_pet", n_per_class=8, size=SMALL, annotations=True)
    with open(root / "annotations" / "test.txt", "a") as listing:
        listing.write("#Image CLASS-ID SPECIES BREED ID\n\n")  # comments and blank lines are fine
    write_image(root / "images" / "Bengal_99.jpg", RED, SMALL)  # in neither list -> train
    splits = {e.path: e.source_split for e in list_entries(root, "oxford_pet")}
    test_lines = (root / "annotations" / "test.txt").read_text().split("\n")
    in_test = {f"images/{line.split()[0]}.jpg" for line in test_lines if line and not line.startswith("#")}
    assert len(in_test) == 4  # every fourth photo of each breed
    assert {path for path, split in splits.items() if split == "test"} == in_test
    assert splits["images/Bengal_99.jpg"] == "train"


def test_oxford_lone_test_list_is_ignored(tmp_path):
    root = make_layout(tmp_path / "oxford", "oxford_pet", n_per_class=4, size=SMALL, annotations=True)
    (root / "annotations" / "trainval.txt").unlink()  # a half-copied annotations/ folder
    assert {e.source_split for e in list_entries(root, "auto")} == {"train"}


def test_unrecognised_folder_is_one_line_naming_every_layout_and_the_fix(tmp_path):
    write_image(tmp_path / "holiday" / "beach.jpg", BLUE, SMALL)
    with pytest.raises(DataError) as error:
        detect_layout(tmp_path)
    message = one_line(error)
    assert str(tmp_path) in message
    assert all(layout in message for layout in LAYOUTS)
    assert "--data.root" in message and "--data.layout" in message


def test_forced_layout_that_does_not_match_or_does_not_exist_is_an_error(tmp_path):
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=2, size=SMALL)
    with pytest.raises(DataError) as error:
        list_entries(root, "oxford_pet")
    message = one_line(error)
    assert "does not look like layout oxford_pet" in message and "images/" in message
    assert "--data.layout auto" in message
    with pytest.raises(DataError) as error:
        resolve_layout(root, "petimages")
    message = one_line(error)
    assert "unknown data.layout 'petimages'" in message and all(layout in message for layout in LAYOUTS)
