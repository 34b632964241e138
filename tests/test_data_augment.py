"""Batched augmentation: exact when it should be identity, mirrored when flipped, reproducible by seed."""

import torch

from datasets.augment import augment_batch, augmentation_seed
from models.classifier import CatsDogsClassifier


def images(batch: int = 6, size: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def test_a_full_square_crop_without_flip_returns_the_same_pixels():
    x = images()
    out = augment_batch(
        x, torch.Generator().manual_seed(1), hflip=False, crop_scale=(1, 1), crop_ratio=(1, 1)
    )
    assert out.dtype == torch.uint8 and torch.equal(out, x)


def test_flips_through_the_crop_path_mirror_whole_images():
    x = images(batch=32)
    out = augment_batch(x, torch.Generator().manual_seed(2), hflip=True, crop_scale=(1, 1), crop_ratio=(1, 1))
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 4 <= sum(mirrored) <= 28  # about half of the batch flips


def test_crops_are_reproducible_by_seed_and_vary_between_seeds():
    x = images()
    first = augment_batch(x, torch.Generator().manual_seed(3), crop_scale=(0.3, 0.6))
    again = augment_batch(x, torch.Generator().manual_seed(3), crop_scale=(0.3, 0.6))
    other = augment_batch(x, torch.Generator().manual_seed(4), crop_scale=(0.3, 0.6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == x.shape and not torch.equal(first, x)


def test_mixup_blends_inputs_and_targets_alike():
    torch.manual_seed(0)
    model = CatsDogsClassifier(network="logreg", image_size=8, mixup_alpha=0.4)
    x = images(batch=16, size=8)
    targets = torch.tensor([1.0, 0.0] * 8)
    logits, mixed = model._mixup_forward(x, targets)
    assert logits.shape == (16,)
    assert ((mixed >= 0) & (mixed <= 1)).all()
    assert ((mixed > 0) & (mixed < 1)).any()  # some targets are blends of a cat and a dog


def test_overwrite_flips_the_callers_batch_in_place_with_the_same_result():
    x = images(batch=32)
    expected = augment_batch(x, torch.Generator().manual_seed(5), hflip=True)
    assert not torch.equal(expected, x)  # some images were mirrored, and x was left alone
    owned = x.clone()
    out = augment_batch(owned, torch.Generator().manual_seed(5), hflip=True, overwrite=True)
    assert out.data_ptr() == owned.data_ptr()  # no copy of the batch
    assert torch.equal(out, expected)


def test_flips_mirror_exactly_the_images_the_generator_picks():
    x = images(batch=64)
    out = augment_batch(x, torch.Generator().manual_seed(6), hflip=True)
    picked = torch.rand(64, generator=torch.Generator().manual_seed(6)) < 0.5  # the same draw
    expected = torch.stack([image.flip(-1) if p else image for image, p in zip(x, picked, strict=True)])
    assert 0 < int(picked.sum()) < 64 and torch.equal(out, expected)


def test_augmentation_seeds_are_per_batch_and_per_rank_and_always_fit_a_generator():
    seeds = {
        augmentation_seed(7, epoch, batch, rank)
        for epoch in range(3)
        for batch in range(5)
        for rank in range(4)
    }
    assert len(seeds) == 3 * 5 * 4  # no two batches, epochs or ranks share their flips
    assert augmentation_seed(7, 1, 2, 3) == augmentation_seed(7, 1, 2, 3)  # a resumed run draws the same
    largest = augmentation_seed(2**32 - 1, 10_000, 100_000, 63)
    assert 0 <= largest < 2**64
    torch.Generator().manual_seed(largest)  # raised "Overflow when unpacking long long" before the modulo
