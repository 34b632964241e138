"""Folder layouts: detection, labels (cat = 1), source splits, errors."""

import pytest

from datasets import LAYOUTS, DataError
from datasets.layouts import detect_layout, list_entries, resolve_layout
from tests.image_factory import (
    make_directory_named_image,
    make_layout,
    write_image,
    write_thumbs_db,
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_listed(tmp_path, layout):
    root = make_layout(tmp_path / "pets", layout, n_per_class=4)
    assert detect_layout(root) == layout
    entries = list_entries(root, "auto")
    held_out = 2 * 2 if layout == "split_folders" else 0  # 4 // 2 per class in validation/
    assert len(entries) == 2 * 4 + held_out
    assert [e.path for e in entries] == sorted(e.path for e in entries)
    assert all((root / e.path).is_file() and "\\" not in e.path for e in entries)
    assert sum(e.label for e in entries) == len(entries) // 2


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cat_is_label_one(tmp_path, layout):
    root = make_layout(tmp_path / "pets", layout, n_per_class=3)
    for entry in list_entries(root, layout):
        name = entry.path.lower()
        is_cat = "cat" in name or "abyssinian" in name
        assert entry.label == (1 if is_cat else 0), entry.path


@pytest.mark.parametrize(("cat_folder", "dog_folder"), [("Cat", "Dog"), ("cats", "DOGS"), ("CAT", "dog")])
def test_class_folder_names_any_case_and_number(tmp_path, cat_folder, dog_folder):
    write_image(tmp_path / cat_folder / "a.jpg", (255, 0, 0))
    write_image(tmp_path / dog_folder / "b.jpg", (0, 0, 255))
    write_image(tmp_path / "other" / "c.jpg", (0, 0, 255))  # not a class: ignored
    entries = list_entries(tmp_path, "auto")
    assert [(e.path, e.label, e.source_split) for e in entries] == sorted(
        [(f"{cat_folder}/a.jpg", 1, "train"), (f"{dog_folder}/b.jpg", 0, "train")]
    )


def test_broken_files_are_entries_but_dot_files_are_not(tmp_path):
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=2)
    write_thumbs_db(root / "Cat" / "Thumbs.db")
    make_directory_named_image(root / "Dog" / "666.jpg")
    (root / "Cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / "Cat" / "nested" / "deep.jpg", (255, 0, 0))
    paths = [e.path for e in list_entries(root, "class_folders")]
    assert "Cat/Thumbs.db" in paths
    assert "Dog/666.jpg" in paths  # a directory named like a photo, reported later
    assert "Cat/nested/deep.jpg" in paths
    assert not any(".DS_Store" in p for p in paths)


@pytest.mark.parametrize("held_out", ["validation", "val", "test"])
def test_split_folders_marks_held_out_folder_as_test(tmp_path, held_out):
    for split in ("train", held_out):
        write_image(tmp_path / split / "cats" / f"{split}_cat.jpg", (255, 0, 0))
        write_image(tmp_path / split / "dogs" / f"{split}_dog.jpg", (0, 0, 255))
    entries = list_entries(tmp_path, "auto")
    assert detect_layout(tmp_path) == "split_folders"
    assert {(e.path.split("/")[0], e.source_split) for e in entries} == {
        ("train", "train"),
        (held_out, "test"),
    }


def test_split_folders_with_two_held_out_folders_is_an_error(tmp_path):
    for split in ("train", "val", "test"):
        write_image(tmp_path / split / "cats" / "a.jpg", (255, 0, 0))
    with pytest.raises(DataError, match="several held-out folders"):
        detect_layout(tmp_path)


def test_kaggle_flat_labels_from_file_name(tmp_path):
    root = make_layout(tmp_path / "kaggle", "kaggle_flat", n_per_class=2)
    labels = {e.path: e.label for e in list_entries(root, "kaggle_flat")}
    assert labels == {"train/cat.0.jpg": 1, "train/cat.1.jpg": 1, "train/dog.0.jpg": 0, "train/dog.1.jpg": 0}


def test_oxford_annotations_decide_the_split(tmp_path):
    root = make_layout(tmp_path / "oxford", "oxford_pet", n_per_class=8, annotations=True)
    write_image(root / "images" / "Bengal_99.jpg", (255, 0, 0))  # in neither list -> train
    splits = {e.path: e.source_split for e in list_entries(root, "oxford_pet")}
    assert splits["images/Abyssinian_4.jpg"] == "test"
    assert splits["images/american_bulldog_8.jpg"] == "test"
    assert splits["images/Abyssinian_1.jpg"] == "train"
    assert splits["images/Bengal_99.jpg"] == "train"
    assert sum(split == "test" for split in splits.values()) == 4


def test_oxford_without_annotations_is_all_train(tmp_path):
    root = make_layout(tmp_path / "oxford", "oxford_pet", n_per_class=4)
    assert {e.source_split for e in list_entries(root, "auto")} == {"train"}


def test_unrecognised_folder_lists_every_layout_in_one_line(tmp_path):
    write_image(tmp_path / "holiday" / "beach.jpg", (0, 0, 255))
    with pytest.raises(DataError) as error:
        detect_layout(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert all(layout in message for layout in LAYOUTS)
    assert "--data.layout" in message


def test_forced_layout_that_does_not_match_is_an_error(tmp_path):
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=2)
    assert resolve_layout(root, "class_folders") == "class_folders"
    with pytest.raises(DataError, match="does not look like layout oxford_pet"):
        list_entries(root, "oxford_pet")
    with pytest.raises(DataError, match="unknown data.layout 'petimages'"):
        resolve_layout(root, "petimages")
