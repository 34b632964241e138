"""Training augmentation (datasets.datamodule.train_transform): what each option does to uint8
photos, that it reaches the training batches only, and the options' range checks."""

import numpy as np
import pytest
import torch

from datasets import DataError
from datasets.datamodule import CatsDogsDataModule, train_transform
from datasets.dataset import CachedImages
from tests.image_factory import make_layout

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
SIZE = 16


def photos(count: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)


def apply(transform, images: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # torchvision's v2 transforms draw from the global generator
    return torch.stack([transform(image) for image in images])


def test_no_option_means_no_transform_and_a_full_crop_is_the_identity():
    assert train_transform(SIZE, crop_scale=None, auto_augment="none") is None
    x = photos()
    out = apply(train_transform(SIZE, (1.0, 1.0), "none"), x, seed=0)
    assert out.dtype == torch.uint8 and torch.equal(out, x)


def test_hflip_mirrors_about_half_of_a_batch_and_leaves_the_rest():
    x = photos(64)
    torch.manual_seed(1)
    out, labels = CachedImages(x.numpy(), torch.zeros(64), np.arange(64), hflip=True).__getitems__(
        list(range(64))
    )
    assert torch.equal(labels, torch.zeros(64, dtype=torch.int64))
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert torch.all(mirrored ^ kept)  # each photo either mirrored or untouched (random: never both)
    assert 16 <= int(mirrored.sum()) <= 48


@pytest.mark.parametrize(
    ("crop_scale", "auto_augment"), [((0.3, 0.6), "none"), (None, "trivial"), (None, "randaugment")]
)
def test_random_augmentations_keep_shape_and_dtype_vary_by_seed_and_repeat_with_it(crop_scale, auto_augment):
    transform = train_transform(SIZE, crop_scale, auto_augment)
    x = photos(8)
    first, again, other = apply(transform, x, 3), apply(transform, x, 3), apply(transform, x, 4)
    assert first.shape == x.shape and first.dtype == torch.uint8
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, x)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_layout(tmp_path_factory.mktemp("aug") / "pets", "class_folders", 10, (20, 16))


def test_augmentation_reaches_training_batches_only(root, tmp_path):
    options = dict(image_size=SIZE, batch_size=4, cache_dir=str(tmp_path / "cache"), seed=5)
    plain = CatsDogsDataModule(str(root), hflip=False, **options)
    flipped = CatsDogsDataModule(str(root), hflip=True, **options)
    augmented = CatsDogsDataModule(
        str(root), hflip=True, crop_scale=(0.4, 0.8), auto_augment="trivial", **options
    )
    for data in (plain, flipped, augmented):
        data.prepare_data()
        data.setup("fit")
    # The same seed gives the same order; only the flips differ, and only while training.
    torch.manual_seed(0)
    expected = torch.cat([x for x, _ in plain.train_dataloader()])
    got = torch.cat([x for x, _ in flipped.train_dataloader()])
    mirrored = [torch.equal(g, e.flip(-1)) for g, e in zip(got, expected, strict=True)]
    assert all(m or torch.equal(g, e) for m, g, e in zip(mirrored, got, expected, strict=True))
    assert 0 < sum(mirrored) < len(got)
    for name in ("val_dataloader", "test_dataloader"):
        reference = torch.cat([x for x, _ in getattr(plain, name)()])
        for data in (flipped, augmented):
            assert torch.equal(torch.cat([x for x, _ in getattr(data, name)()]), reference), name


@pytest.mark.parametrize("crop_scale", [(0.0, 1.0), (0.8, 0.5), (0.5, 1.5)])
def test_crop_scale_out_of_range_is_a_one_line_error(root, tmp_path, crop_scale):
    with pytest.raises(DataError) as error:
        CatsDogsDataModule(str(root), crop_scale=crop_scale, cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "\n" not in message and f"data.crop_scale {list(crop_scale)}" in message
    assert "0 < low <= high <= 1" in message
    assert not (tmp_path / "cache").exists()
