"""CatsDogsDataModule end to end on a tiny real folder: batches, splits, statistics, summary,
torchdata's mid-epoch loader state, worker processes and a real Lightning fit."""

import math
import pickle

import lightning as L
import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from datasets import DataError
from datasets.datamodule import CatsDogsDataModule, available_cpus
from models.labels import CAT
from tests.image_factory import (
    CAT_COLOR,
    make_layout,
    write_empty,
    write_image,
    write_random_bytes,
    write_text_as_jpg,
    write_truncated_jpeg,
)

# torchdata 0.11 calls torch.set_vital, deprecated in torch 2.9+ (datasets.datamodule filters it
# too, but pytest restores the warning filters around every test).
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
SIZE = 16
N_PER_CLASS = 12
BROKEN = ["Cat/empty.jpg", "Cat/random.jpg", "Dog/notes.jpg", "Dog/truncated.jpg"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 cats and 12 dogs (20x16 JPEGs) in class folders, plus four files that are no photo."""
    root = make_layout(tmp_path_factory.mktemp("dm") / "PetImages", "class_folders", N_PER_CLASS, (20, 16))
    for relative, make in zip(
        BROKEN, (write_empty, write_random_bytes, write_text_as_jpg, write_truncated_jpeg), strict=True
    ):
        make(root / relative)
    return root


def ready(root, cache_dir, **kwargs) -> CatsDogsDataModule:
    options = dict(image_size=SIZE, batch_size=4, hflip=False, cache_dir=str(cache_dir)) | kwargs
    data = CatsDogsDataModule(str(root), **options)
    data.prepare_data()
    data.setup("fit")
    return data


# LightningDataModule.save_hyperparameters keeps the frames that built a datamodule in a
# reference cycle with it, so a test's local loaders outlive the test until the garbage
# collector runs; a loader with worker processes freed that way waits out a 5 s join
# timeout. Tests that start workers therefore drop their loaders themselves.


def rows(data: CatsDogsDataModule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The cache's own pixels and labels of a split, in split order."""
    indices = data.splits[split]
    return torch.from_numpy(np.array(data.cache.images[indices])), torch.from_numpy(
        data.cache.labels[indices]
    )


def test_every_loader_gives_uint8_batches_and_labels_with_cat_one(photos, tmp_path):
    data = ready(photos, tmp_path / "cache")
    assert data.layout == "class_folders" and data.manifest_hash == data.cache.key
    readable = 2 * N_PER_CLASS
    assert len(data.cache.labels) == readable and sorted(p for p, _ in data.cache.skipped) == BROKEN
    seen = []
    for split, loader in [
        ("train", data.train_dataloader()),
        ("val", data.val_dataloader()),
        ("test", data.test_dataloader()),
    ]:
        batches = list(loader)
        assert len(batches) == math.ceil(len(data.splits[split]) / 4)
        for x, y in batches:
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, SIZE, SIZE) and 1 <= len(x) <= 4
            assert y.dtype == torch.int64 and y.shape == (len(x),)
            # Cats are the bright reddish photos (CAT_COLOR): label 1 must go with high red.
            red = x[:, 0].float().mean(dim=(1, 2))
            assert torch.equal(red > CAT_COLOR[0] - 60, y == CAT)
        x = torch.cat([x for x, _ in batches])
        y = torch.cat([y for _, y in batches])
        seen += x.flatten(1).tolist()
        if split != "train":  # evaluation: the cache's pixels, in split order, unaugmented
            assert torch.equal(x, rows(data, split)[0]) and torch.equal(y, rows(data, split)[1])
    assert len(seen) == readable and len({tuple(image) for image in seen}) == readable  # each photo once


def test_splits_are_disjoint_cover_every_photo_and_respect_the_fractions(photos, tmp_path):
    data = ready(photos, tmp_path / "cache", val_fraction=0.25, test_fraction=0.2)
    n = len(data.cache.labels)
    sizes = {name: len(indices) for name, indices in data.splits.items()}
    test = round(0.2 * n)
    assert sizes == {
        "train": n - test - round(0.25 * (n - test)),
        "val": round(0.25 * (n - test)),
        "test": test,
    }
    together = np.concatenate(list(data.splits.values()))
    assert sorted(together.tolist()) == list(range(n))
    hashes = [{data.cache.content_hashes[i] for i in data.splits[name]} for name in ("train", "val", "test")]
    assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2])


def test_same_seed_same_split_and_order_other_seed_other_ones(photos, tmp_path):
    def train_labels(data):
        return [y.tolist() for _, y in data.train_dataloader()]

    first = ready(photos, tmp_path / "one", seed=3)
    again = ready(photos, tmp_path / "two", seed=3)  # a separate cache: nothing shared but the photos
    other = ready(photos, tmp_path / "one", seed=4)
    assert all(np.array_equal(first.splits[s], again.splits[s]) for s in ("train", "val", "test"))
    assert train_labels(first) == train_labels(again)
    assert torch.equal(torch.cat([x for x, _ in first.train_dataloader()]),
                       torch.cat([x for x, _ in again.train_dataloader()]))  # fmt: skip
    assert any(not np.array_equal(first.splits[s], other.splits[s]) for s in ("val", "test"))
    # The same training photos in another order when only the order may differ.
    loader = first.train_dataloader()
    epoch_one, epoch_two = (torch.cat([x for x, _ in loader]) for _ in range(2))
    assert not torch.equal(epoch_one, epoch_two)  # reshuffled every epoch
    assert sorted(epoch_one.flatten(1).tolist()) == sorted(epoch_two.flatten(1).tolist())


@pytest.mark.parametrize("num_workers", [0, 1])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_mid_epoch_loader_state_resumes_with_exactly_the_remaining_batches(
    photos, tmp_path, num_workers, stop_after
):
    def loader():  # a fresh datamodule each time, as after a restart
        return ready(photos, tmp_path / "cache", batch_size=3, num_workers=num_workers).train_dataloader()

    uninterrupted = loader()
    assert isinstance(uninterrupted, StatefulDataLoader)
    whole_epoch = list(uninterrupted)
    assert len(whole_epoch) > stop_after + 1

    interrupted = loader()
    batches = iter(interrupted)
    done = [next(batches) for _ in range(stop_after)]
    state = pickle.loads(pickle.dumps(interrupted.state_dict()))  # as a checkpoint stores it
    del batches

    resumed = loader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(done) + len(rest) == len(whole_epoch)
    for (x, y), (expected_x, expected_y) in zip(done + rest, whole_epoch, strict=True):
        assert torch.equal(y, expected_y) and torch.equal(x, expected_x)
    del uninterrupted, interrupted, resumed  # stops their workers now (see above)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_epochs_after_a_resumed_one_keep_the_uninterrupted_order(photos, tmp_path, num_workers):
    def loader():
        return ready(photos, tmp_path / "cache", batch_size=3, num_workers=num_workers).train_dataloader()

    uninterrupted = loader()
    expected = [torch.cat([y for _, y in uninterrupted]) for _ in range(2)]
    interrupted = loader()
    batches = iter(interrupted)
    next(batches)
    state = interrupted.state_dict()
    del batches
    resumed = loader()
    resumed.load_state_dict(state)
    list(resumed)  # the rest of the interrupted epoch
    next_epoch = torch.cat([y for _, y in resumed])
    del uninterrupted, interrupted, resumed  # stops their workers now (see above)
    assert torch.equal(next_epoch, expected[1])


def test_worker_processes_give_the_same_evaluation_batches_and_training_photos(photos, tmp_path):
    in_process = ready(photos, tmp_path / "cache")
    workers = ready(photos, tmp_path / "cache", num_workers=2)
    assert workers.train_dataloader().persistent_workers
    for name in ("val_dataloader", "test_dataloader"):
        got, expected = list(getattr(workers, name)()), list(getattr(in_process, name)())
        assert len(got) == len(expected)
        for (x, y), (expected_x, expected_y) in zip(got, expected, strict=True):
            assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    got = sorted(x.flatten(1).tolist() for x, _ in workers.train_dataloader())
    expected = sorted(x.flatten(1).tolist() for x, _ in in_process.train_dataloader())
    assert sorted(sum(got, [])) == sorted(sum(expected, []))  # each training photo once per epoch


@pytest.mark.xfail(
    strict=True,
    reason="torchdata 0.11 with workers builds the sampler iterator twice, so the first epoch "
    "uses the generator's second permutation: the training order depends on num_workers",
)
def test_training_order_depends_on_the_seed_alone_not_on_num_workers(photos, tmp_path):
    in_process = ready(photos, tmp_path / "cache").train_dataloader()
    workers = ready(photos, tmp_path / "cache", num_workers=1).train_dataloader()
    orders = [torch.cat([y for _, y in loader]) for loader in (in_process, workers)]
    del workers  # stops its worker now (see above)
    assert torch.equal(*orders)


def test_split_dataset_pickles_as_a_file_name_not_the_pixels(photos, tmp_path):
    """Workers started by spawn receive the dataset pickled: it must not carry every photo."""
    data = ready(photos, tmp_path / "cache")
    dataset = data.train_dataloader().dataset
    blob = pickle.dumps(dataset)
    assert len(blob) < data.cache.images.nbytes / 4
    restored = pickle.loads(blob)
    assert isinstance(restored.images, np.memmap) and len(restored) == len(dataset)
    for i in range(len(dataset)):
        assert torch.equal(restored[i][0], dataset[i][0]) and restored[i][1] == dataset[i][1]


def test_channel_stats_are_those_of_the_training_split(photos, tmp_path):
    data = ready(photos, tmp_path / "cache")
    train = np.asarray(data.cache.images[data.splits["train"]], dtype=np.float64) / 255.0
    assert data.channel_mean.dtype == torch.float32 and data.channel_mean.shape == (3,)
    assert np.allclose(data.channel_mean.numpy(), train.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(data.channel_std.numpy(), train.std(axis=(0, 2, 3)), atol=1e-6)
    everything = np.asarray(data.cache.images, dtype=np.float64) / 255.0
    assert not np.allclose(data.channel_mean.numpy(), everything.mean(axis=(0, 2, 3)), atol=1e-6)


def test_summary_names_root_layout_splits_and_the_skipped_report(photos, tmp_path):
    data = CatsDogsDataModule(str(photos), image_size=SIZE, cache_dir=str(tmp_path / "cache"))
    assert "not set up yet" in data.summary()
    data.prepare_data()
    data.setup("fit")
    text = data.summary()
    assert f"data: {photos} (class_folders), {2 * N_PER_CLASS} photos" in text
    for name, indices in data.splits.items():
        cats = int((data.cache.labels[indices] == CAT).sum())
        assert f"{len(indices)} photos: {cats} cats, {len(indices) - cats} dogs" in text, name
    assert f"skipped: {len(BROKEN)} unreadable files, listed in {data.cache.skipped_report}" in text
    listed = data.cache.skipped_report.read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in listed) == BROKEN


def test_training_copies_of_held_out_photos_are_dropped(tmp_path):
    root = make_layout(tmp_path / "pets", "split_folders", n_per_class=4, size=(16, 16))
    copy = root / "train" / "cats" / "copy_of_validation.jpg"
    copy.write_bytes((root / "validation" / "cats" / "cat.4.jpg").read_bytes())
    data = ready(root, tmp_path / "cache")
    assert data.layout == "split_folders"
    paths = data.cache.paths
    # The held-out folder is the test split, whatever test_fraction says.
    assert sorted(paths[i] for i in data.splits["test"]) == sorted(
        p for p in paths if p.startswith("validation/")
    )
    kept = {paths[i] for name in ("train", "val") for i in data.splits[name]}
    assert "train/cats/copy_of_validation.jpg" not in kept and len(kept) == 2 * 4
    assert "1 training copies of test photos dropped" in data.summary()


def test_every_training_photo_also_held_out_is_a_one_line_error(tmp_path):
    for split in ("train", "validation"):
        write_image(tmp_path / "pets" / split / "cats" / "a.jpg", (250, 80, 80), (16, 16))
        write_image(tmp_path / "pets" / split / "dogs" / "b.jpg", (40, 50, 120), (16, 16))
    data = CatsDogsDataModule(str(tmp_path / "pets"), image_size=SIZE, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    with pytest.raises(DataError) as error:
        data.setup("fit")
    message = str(error.value)
    assert "\n" not in message and "no training photos left" in message and "add training photos" in message


def test_a_lightning_fit_validate_and_test_consume_the_datamodule(photos, tmp_path):
    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * SIZE * SIZE, 1)
            self.seen = {"train": 0, "val": 0, "test": 0}

        def step(self, batch, split):
            x, y = batch
            assert x.dtype == torch.uint8 and y.dtype == torch.int64
            self.seen[split] += len(y)
            logits = self.linear(x.flatten(1).float() / 255).squeeze(1)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

        def training_step(self, batch, batch_idx):
            return self.step(batch, "train")

        def validation_step(self, batch, batch_idx):
            self.step(batch, "val")

        def test_step(self, batch, batch_idx):
            self.step(batch, "test")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = CatsDogsDataModule(str(photos), image_size=SIZE, batch_size=8, cache_dir=str(tmp_path / "c"))
    trainer = L.Trainer(
        max_epochs=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    probe = Probe()
    trainer.fit(probe, datamodule=data)
    trainer.test(probe, datamodule=data, verbose=False)
    sizes = {name: len(indices) for name, indices in data.splits.items()}
    assert probe.seen == {"train": 2 * sizes["train"], "val": 2 * sizes["val"], "test": sizes["test"]}
    assert trainer.global_step == 2 * math.ceil(sizes["train"] / 8)


def loader_options(data: CatsDogsDataModule) -> list[tuple[int, bool, bool]]:
    loaders = (data.train_dataloader(), data.val_dataloader(), data.test_dataloader())  # none started
    return [(loader.num_workers, loader.pin_memory, loader.persistent_workers) for loader in loaders]


def test_on_a_cpu_every_loader_loads_in_the_training_process(photos, tmp_path):
    data = ready(photos, tmp_path / "cache")
    data.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False)
    assert loader_options(data) == [(0, False, False)] * 3


def test_for_gpus_every_loader_has_kept_workers_from_its_share_of_the_cores_and_pinned_memory(
    photos, tmp_path, monkeypatch
):
    # Two GPUs as torch would report them, stubbed where Lightning asks torch.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    data = ready(photos, tmp_path / "cache")
    data.trainer = L.Trainer(accelerator="cuda", devices=2, strategy="ddp", logger=False)
    workers = max(1, available_cpus() // 2)  # per process: each GPU has its own
    assert loader_options(data) == [(workers, True, True)] * 3
    explicit = ready(photos, tmp_path / "cache", num_workers=0)
    explicit.trainer = data.trainer
    assert loader_options(explicit) == [(0, True, False)] * 3
