"""split_indices: seeded, disjoint by index and by content, source test split respected."""

import numpy as np
import pytest

from datasets.splits import split_indices


def unique_hashes(n: int) -> list[str]:
    return [f"{i:064x}" for i in range(n)]


def assert_disjoint(splits: dict[str, np.ndarray], hashes: list[str]) -> None:
    names = ("train", "val", "test")
    for i, a in enumerate(names):
        assert np.all(np.diff(splits[a]) > 0), f"{a} is not sorted and unique"
        for b in names[i + 1 :]:
            assert not set(splits[a]) & set(splits[b]), (a, b)
            assert not {hashes[k] for k in splits[a]} & {hashes[k] for k in splits[b]}, (a, b)


def test_same_seed_same_split_other_seed_other_split():
    hashes, sources = unique_hashes(200), ["train"] * 200
    first = split_indices(hashes, sources, 0.1, 0.2, seed=0)
    again = split_indices(hashes, sources, 0.1, 0.2, seed=0)
    other = split_indices(hashes, sources, 0.1, 0.2, seed=1)
    for name in ("train", "val", "test"):
        assert np.array_equal(first[name], again[name])
    assert not np.array_equal(first["test"], other["test"])
    assert {name: len(idx) for name, idx in first.items()} == {"train": 144, "val": 16, "test": 40}
    assert sorted(np.concatenate(list(first.values()))) == list(range(200))
    assert_disjoint(first, hashes)


def test_each_seed_draws_its_own_split():
    hashes, sources = unique_hashes(60), ["train"] * 60
    drawn = [split_indices(hashes, sources, 0.2, 0.2, seed=seed) for seed in range(8)]
    assert len({tuple(s["test"]) for s in drawn}) == 8
    assert len({tuple(s["val"]) for s in drawn}) == 8
    assert all(np.array_equal(s["train"], split_indices(hashes, sources, 0.2, 0.2, seed=i)["train"])
               for i, s in enumerate(drawn))  # fmt: skip


def expected_count(fraction: float, groups: int) -> int:
    """The documented rule: round(fraction * groups), at least 1 when fraction > 0, at most
    groups - 1 so training keeps a photo."""
    if fraction <= 0 or groups < 2:
        return 0
    return min(max(1, round(fraction * groups)), groups - 1)


@pytest.mark.parametrize("n", [3, 10, 37, 200, 1001])
@pytest.mark.parametrize(
    ("val_fraction", "test_fraction"), [(0.1, 0.1), (0.25, 0.0), (0.0, 0.3), (0.49, 0.49)]
)
def test_fractions_are_respected(n, val_fraction, test_fraction):
    hashes = unique_hashes(n)
    splits = split_indices(hashes, ["train"] * n, val_fraction, test_fraction, seed=n)
    test = expected_count(test_fraction, n)
    assert len(splits["test"]) == test
    assert len(splits["val"]) == expected_count(val_fraction, n - test)
    assert len(splits["train"]) == n - test - len(splits["val"]) >= 1
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(n))  # nothing lost
    assert_disjoint(splits, hashes)


def test_split_does_not_depend_on_file_order():
    hashes = unique_hashes(50)
    order = np.random.default_rng(3).permutation(50)
    shuffled = [hashes[i] for i in order]
    plain = split_indices(hashes, ["train"] * 50, 0.2, 0.2, seed=5)
    moved = split_indices(shuffled, ["train"] * 50, 0.2, 0.2, seed=5)
    assert {hashes[i] for i in plain["test"]} == {shuffled[i] for i in moved["test"]}


def test_duplicates_never_straddle_splits():
    # 30 photos, each saved under 3 names: every group must land in one split.
    hashes = [h for h in unique_hashes(30) for _ in range(3)]
    for seed in range(10):
        splits = split_indices(hashes, ["train"] * 90, 0.2, 0.2, seed=seed)
        assert_disjoint(splits, hashes)
        assert sum(len(s) for s in splits.values()) == 90
        assert all(len(s) % 3 == 0 for s in splits.values())


def test_source_test_split_is_used_and_its_duplicates_leave_train():
    hashes = unique_hashes(40)
    sources = ["train"] * 30 + ["test"] * 10
    hashes[0] = hashes[35]  # a training photo that is also in the test folder
    hashes[1] = hashes[36]
    splits = split_indices(hashes, sources, 0.1, 0.3, seed=0)
    assert list(splits["test"]) == list(range(30, 40))  # test_fraction ignored
    assert 0 not in splits["train"] and 0 not in splits["val"]
    assert 1 not in splits["train"] and 1 not in splits["val"]
    assert len(splits["train"]) + len(splits["val"]) == 28  # 2 duplicates dropped
    assert len(splits["val"]) == 3  # round(0.1 * 28)
    assert_disjoint(splits, hashes)


def test_zero_fractions_keep_everything_in_train():
    splits = split_indices(unique_hashes(10), ["train"] * 10, 0.0, 0.0, seed=0)
    assert len(splits["train"]) == 10 and len(splits["val"]) == 0 and len(splits["test"]) == 0
    assert splits["val"].dtype.kind == "i"


def test_tiny_pool_keeps_one_image_for_training():
    splits = split_indices(unique_hashes(2), ["train"] * 2, 0.4, 0.4, seed=0)
    assert len(splits["train"]) == 1 and len(splits["test"]) == 1 and len(splits["val"]) == 0
