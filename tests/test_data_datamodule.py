"""CatsDogsDataModule on a tiny real folder: batches, statistics, flips, loaders, errors."""

import pickle
import time

import lightning as L
import numpy as np
import pytest
import torch

from datasets import CatsDogsDataModule, DataError
from datasets.dataset import CachedImageDataset, EpochShuffleSampler
from tests.image_factory import make_layout, write_empty

SIZE = 16


@pytest.fixture
def pets(tmp_path):
    root = make_layout(tmp_path / "pets", "class_folders", n_per_class=24)
    write_empty(root / "Cat" / "broken.jpg")
    return root


def ready(root, tmp_path, **kwargs) -> CatsDogsDataModule:
    options = dict(image_size=SIZE, batch_size=8, cache_dir=str(tmp_path / "cache"))
    data = CatsDogsDataModule(str(root), **(options | kwargs))
    data.prepare_data()
    data.setup("fit")
    return data


def test_setup_splits_the_cache_and_batches_are_uint8_with_cat_one(pets, tmp_path):
    data = ready(pets, tmp_path)
    assert data.split_sizes == {"train": 39, "val": 4, "test": 5}  # 48 photos, 10% + 10%
    assert data.manifest_hash == data.cache_info.key
    assert len(data.cache_info.skipped) == 1
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, 3, SIZE, SIZE) and x.dtype == torch.uint8
    assert y.shape == (8,) and y.dtype == torch.float32
    # Cats are the bright reddish photos: label 1.0 must go with high red.
    seen_cat = seen_dog = False
    for x, y in data.train_dataloader():
        red = x[:, 0].float().mean(dim=(1, 2))  # (B,)
        assert torch.all((red > 150) == (y == 1.0))
        seen_cat, seen_dog = seen_cat or bool(y.any()), seen_dog or not bool(y.all())
    assert seen_cat and seen_dog


def test_channel_stats_match_numpy_over_the_train_split(pets, tmp_path):
    data = ready(pets, tmp_path)
    train = np.stack([x.numpy() for x, _ in data._datasets["train"]]) / 255.0  # (N, 3, S, S)
    assert data.channel_mean.dtype == torch.float32 and data.channel_mean.shape == (3,)
    expected_mean = train.mean(axis=(0, 2, 3))
    expected_std = train.std(axis=(0, 2, 3))
    assert np.allclose(data.channel_mean.numpy(), expected_mean, atol=1e-6)
    assert np.allclose(data.channel_std.numpy(), expected_std, atol=1e-6)


def test_loaders_cover_each_split_once_train_shuffled_with_seed(pets, tmp_path):
    data = ready(pets, tmp_path, batch_size=3)
    for name, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        labels = torch.cat([y for _, y in loader])
        assert len(labels) == data.split_sizes[name]  # no drop_last, last batch smaller
        again = torch.cat([y for _, y in loader])
        assert torch.equal(labels, again)
    first = [y for _, y in ready(pets, tmp_path, batch_size=3, seed=7).train_dataloader()]
    second = [y for _, y in ready(pets, tmp_path, batch_size=3, seed=7).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert sum(len(y) for y in first) == data.split_sizes["train"]


def test_prepare_data_decodes_once(pets, tmp_path):
    data = ready(pets, tmp_path)
    assert data.cache_info.decoded == 0  # setup only loaded what prepare_data built


def test_batch_read_matches_single_items_and_pickles_small(pets, tmp_path):
    data = ready(pets, tmp_path)
    dataset = data._datasets["train"]
    x, y = dataset.__getitems__([5, 0, 3, 5])
    for row, i in enumerate([0, 3, 5, 5]):  # the same images, in file order (splits are sorted)
        single_x, single_y = dataset[i]
        assert torch.equal(x[row], single_x) and y[row] == single_y
    # Workers get the file name, not a copy of the array.
    blob = pickle.dumps(dataset)
    assert len(blob) < dataset.images.nbytes / 4
    restored: CachedImageDataset = pickle.loads(blob)
    assert torch.equal(restored.__getitems__([2, 1])[0], dataset.__getitems__([2, 1])[0])


def test_loader_with_worker_processes_gives_the_same_batches(pets, tmp_path):
    data = ready(pets, tmp_path, num_workers=1)
    loader = data.val_dataloader()
    assert loader.persistent_workers
    in_workers = torch.cat([x for x, _ in loader])
    in_process = data._datasets["val"].__getitems__(list(range(data.split_sizes["val"])))[0]
    assert torch.equal(in_workers, in_process)


def test_hflip_only_while_training(pets, tmp_path):
    data = ready(pets, tmp_path)
    x = torch.randint(0, 256, (64, 3, SIZE, SIZE), dtype=torch.uint8)
    y = torch.zeros(64)
    assert data.on_after_batch_transfer((x, y), 0)[0] is x  # no trainer attached

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    data.trainer = trainer
    trainer.training = True
    torch.manual_seed(0)
    owned = x.clone()  # the hook flips the DataLoader's fresh batch in place: give it its own
    flipped, same_y = data.on_after_batch_transfer((owned, y), 0)
    assert flipped.dtype == torch.uint8 and same_y is y
    was_flipped = torch.tensor([torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True)])
    unchanged = torch.tensor([torch.equal(f, o) for f, o in zip(flipped, x, strict=True)])
    assert torch.all(was_flipped ^ unchanged)  # each image either flipped or untouched
    assert 16 < int(was_flipped.sum()) < 48  # about half

    trainer.validating = True
    assert torch.equal(data.on_after_batch_transfer((x, y), 0)[0], x)
    trainer.training = True
    no_flip = ready(pets, tmp_path, hflip=False)
    no_flip.trainer = trainer
    assert torch.equal(no_flip.on_after_batch_transfer((x, y), 0)[0], x)


def test_summary_names_root_splits_skipped_and_cache(pets, tmp_path):
    data = ready(pets, tmp_path)
    text = data.summary()
    assert str(pets) in text and "class_folders" in text
    assert "train" in text and "val" in text and "test" in text
    assert "1 unreadable" in text and "skipped.csv" in text
    assert str(data.cache_info.directory) in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"root": "missing/folder"}, "does not exist"),
        ({"layout": "petimages"}, "unknown data.layout"),
        ({"layout": "oxford_pet"}, "does not look like layout oxford_pet"),
        ({"image_size": 4}, "image_size"),
        ({"image_size": 1024}, "image_size"),
        ({"val_fraction": 0.5}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "data.seed -1 is out of range"),
        ({"seed": 2**32}, "data.seed"),
    ],
)
def test_bad_arguments_fail_fast_in_init(pets, tmp_path, kwargs, message):
    options = {"root": str(pets), "cache_dir": str(tmp_path / "cache")} | kwargs
    start = time.monotonic()
    with pytest.raises(DataError, match=message):
        CatsDogsDataModule(**options)
    assert time.monotonic() - start < 1
    assert not (tmp_path / "cache").exists()  # nothing decoded


def test_root_that_is_a_file_or_unrecognised_fails_in_init(pets, tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        CatsDogsDataModule(root=str(pets / "Cat" / "0.jpg"))
    (tmp_path / "holiday").mkdir()
    with pytest.raises(DataError, match="cannot recognise the layout"):
        CatsDogsDataModule(root=str(tmp_path / "holiday"))


@pytest.mark.parametrize("seed", [0, 2**32 - 1])  # the largest seed once overflowed the flips' generator
def test_fit_runs_with_a_trainer(pets, tmp_path, seed):
    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * SIZE * SIZE, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            assert x.dtype == torch.uint8
            return torch.nn.functional.binary_cross_entropy_with_logits(
                self.linear(x.flatten(1).float() / 255).squeeze(1), y
            )

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = CatsDogsDataModule(
        str(pets), image_size=SIZE, batch_size=8, cache_dir=str(tmp_path / "c"), seed=seed
    )
    assert data.hparams.hflip  # so every training batch goes through the seeded flips
    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(Probe(), datamodule=data)
    assert trainer.global_step == 5  # ceil(39 / 8) training batches


@pytest.mark.parametrize("num_samples", [10, 11, 1])
def test_training_sampler_shards_like_torch_and_skips_each_ranks_own_samples(num_samples):
    """Under DDP the training sampler shards its own permutation as torch's DistributedSampler
    would (padded with its first samples, then every world-th), so together the ranks cover
    every photo; a resume's skip then drops each rank's first samples of its own share."""
    world = 3
    ranks = [EpochShuffleSampler(num_samples, seed=5, num_replicas=world, rank=r) for r in range(world)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(5 + 2)).tolist()
    padded = (order * world)[: len(ranks[0]) * world]
    assert shares == [padded[r::world] for r in range(world)]
    assert set().union(*shares) == set(range(num_samples))
    assert all(len(share) == len(sampler) for share, sampler in zip(shares, ranks, strict=True))
    ranks[1].skip_next(2)
    assert list(ranks[1]) == shares[1][2:]
    assert list(ranks[1]) == shares[1]  # the skip applies to one pass only
    # One process: the whole permutation, as before DDP existed.
    assert (
        list(EpochShuffleSampler(num_samples, seed=5))
        == torch.randperm(num_samples, generator=torch.Generator().manual_seed(5)).tolist()
    )
