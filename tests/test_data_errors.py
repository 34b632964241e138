"""Every data problem a user can cause, as the command line meets it (CatsDogsDataModule's
constructor, then prepare_data): one DataError, one line, saying what is wrong (with the
value or folder at fault) and how to fix it. Cheap checks fail before anything is decoded."""

from pathlib import Path

import pytest

from datasets import LAYOUTS, DataError
from datasets.datamodule import CatsDogsDataModule
from tests.image_factory import make_layout, write_empty, write_image, write_text_as_jpg

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
RED, BLUE = (250, 80, 80), (40, 50, 120)


def missing(tmp: Path) -> Path:
    return tmp / "no" / "such" / "folder"


def a_file(tmp: Path) -> Path:
    return write_image(tmp / "photo.jpg", RED, (8, 8))


def empty_folder(tmp: Path) -> Path:
    (tmp / "pets").mkdir()
    return tmp / "pets"


def holiday_photos(tmp: Path) -> Path:
    write_image(tmp / "pets" / "beach" / "0.jpg", BLUE, (8, 8))
    return tmp / "pets"


def empty_class_folders(tmp: Path) -> Path:
    (tmp / "pets" / "Cat").mkdir(parents=True)
    (tmp / "pets" / "Dog").mkdir()
    return tmp / "pets"


def cats_only(tmp: Path) -> Path:
    for i in range(3):
        write_image(tmp / "pets" / "Cat" / f"{i}.jpg", RED, (8, 8), noise=10, seed=i)
    return tmp / "pets"


def dogs_only(tmp: Path) -> Path:
    for i in range(2):
        write_image(tmp / "pets" / "Dog" / f"{i}.jpg", BLUE, (8, 8), noise=10, seed=i)
    write_text_as_jpg(tmp / "pets" / "Cat" / "0.jpg")  # a cat folder, but no readable cat
    return tmp / "pets"


def nothing_readable(tmp: Path) -> Path:
    write_empty(tmp / "pets" / "Cat" / "0.jpg")
    write_text_as_jpg(tmp / "pets" / "Dog" / "0.jpg")
    return tmp / "pets"


def two_held_out_folders(tmp: Path) -> Path:
    for split in ("train", "val", "test"):
        write_image(tmp / "pets" / split / "cats" / "0.jpg", RED, (8, 8))
        write_image(tmp / "pets" / split / "dogs" / "0.jpg", BLUE, (8, 8))
    return tmp / "pets"


def good(tmp: Path) -> Path:
    return make_layout(tmp / "pets", "class_folders", n_per_class=2, size=(8, 8))


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (missing, ["does not exist", "pass --data.root DIR"]),
        (a_file, ["is not a folder", "pass --data.root DIR"]),
        (empty_folder, ["cannot recognise the layout", *LAYOUTS, "--data.root", "--data.layout"]),
        (holiday_photos, ["cannot recognise the layout", "cat*/ and dog*/", "--data.layout"]),
        (two_held_out_folders, ["several held-out folders", "val/", "test/", "keep one"]),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_bad_folders_fail_in_the_constructor(tmp_path, make, fragments):
    root = make(tmp_path)
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(str(root), cache_dir=str(tmp_path / "cache"))
    assert_one_line(error, str(root), *fragments)
    assert not (tmp_path / "cache").exists()  # nothing decoded


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (empty_class_folders, ["no files found", "point --data.root at the photos"]),
        (cats_only, ["only cat photos", "3 readable", "no dogs", "needs both cats and dogs"]),
        (dogs_only, ["only dog photos", "2 readable", "no cats", "needs both cats and dogs"]),
        (nothing_readable, ["no readable images", "all 2 files were skipped", "skipped.csv"]),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_folders_without_both_classes_fail_in_prepare_data(tmp_path, make, fragments):
    root = make(tmp_path)
    data = CatsDogsDataModule(str(root), image_size=8, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError) as error:
        data.prepare_data()
    assert_one_line(error, str(root.resolve()), *fragments)


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("image_size", 4, "8 to 512"),
        ("image_size", 1024, "8 to 512"),
        ("batch_size", 0, "1 or more"),
        ("num_workers", -1, "0 or more"),
        ("seed", -1, f"0 to {2**32 - 1}"),
        ("seed", 2**32, f"0 to {2**32 - 1}"),
        ("val_fraction", 0.5, "in [0, 0.5)"),
        ("test_fraction", -0.1, "in [0, 0.5)"),
    ],
)
def test_out_of_range_options_fail_in_the_constructor(tmp_path, option, value, allowed):
    root = good(tmp_path)
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(str(root), cache_dir=str(tmp_path / "cache"), **{option: value})
    assert_one_line(error, f"data.{option} {value} is out of range", f"pass a value {allowed}")
    assert not (tmp_path / "cache").exists()


def test_the_largest_values_in_range_are_accepted(tmp_path):
    root = good(tmp_path)
    CatsDogsDataModule(str(root), image_size=512, seed=2**32 - 1, val_fraction=0.49, test_fraction=0.0)
    CatsDogsDataModule(str(root), image_size=8, seed=0, batch_size=1, num_workers=0)


def test_unknown_or_mismatched_layout_fails_in_the_constructor(tmp_path):
    root = good(tmp_path)
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(str(root), layout="petimages")
    assert_one_line(error, "unknown data.layout 'petimages'", "choose auto or one of", *LAYOUTS)
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(str(root), layout="kaggle_flat")
    assert_one_line(
        error, str(root), "does not look like layout kaggle_flat", "train/cat.0.jpg", "--data.layout auto"
    )
    assert CatsDogsDataModule(str(root), layout="class_folders").layout == "class_folders"


def test_a_layout_other_than_the_downloads_needs_a_root(tmp_path):
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(root=None, layout="oxford_pet", download_dir=str(tmp_path / "data"))
    assert_one_line(error, "data.layout oxford_pet needs --data.root", "class_folders")
    assert not (tmp_path / "data").exists()  # no download started
