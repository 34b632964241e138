"""Train / val / test index arrays, disjoint by index and by content.

Photos are grouped by the sha256 of their bytes before splitting, so the same
photo saved under two names can never be trained on and then tested on.
"""

from collections.abc import Sequence

import numpy as np


def split_indices(
    content_hashes: Sequence[str],
    source_splits: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Sorted index arrays under "train", "val" and "test".

    If the source marks any image as "test" (a held-out folder or list), the
    test split is exactly those images and test_fraction is ignored; pool
    images whose bytes also occur in test are dropped (their count is
    len(content_hashes) minus the three sizes). Otherwise test_fraction of the
    photo groups is drawn from the pool. val_fraction of what remains is val.
    """
    is_source_test = np.asarray(source_splits, dtype=object) == "test"
    # Sorted unique hashes make group ids independent of file order; the seeded
    # generator then decides everything else.
    unique_hashes, group_of = np.unique(np.asarray(content_hashes, dtype=str), return_inverse=True)
    group_of = group_of.reshape(-1)
    rng = np.random.default_rng(seed)

    if is_source_test.any():
        test_groups = np.unique(group_of[is_source_test])
        in_pool = ~np.isin(group_of, test_groups)  # drops train copies of test photos
        test = np.flatnonzero(is_source_test)
    else:
        pool_groups = np.arange(len(unique_hashes))
        test_groups = _draw(pool_groups, test_fraction, rng)
        in_pool = ~np.isin(group_of, test_groups)
        test = np.flatnonzero(~in_pool)

    val_groups = _draw(np.unique(group_of[in_pool]), val_fraction, rng)
    is_val = in_pool & np.isin(group_of, val_groups)
    return {
        "train": np.flatnonzero(in_pool & ~is_val),
        "val": np.flatnonzero(is_val),
        "test": test,
    }


def _draw(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """round(fraction * len(groups)) groups at random: at least one if fraction > 0,
    but always leaving one behind for training."""
    if fraction <= 0 or len(groups) < 2:
        return groups[:0]
    count = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    return np.sort(rng.permutation(groups)[:count])
