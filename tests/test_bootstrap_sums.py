"""resampled_sums against materialised resamples drawn with the same generator calls."""

import numpy as np
import pytest

from metrics.bootstrap import resampled_sums


def materialised(stats: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """The definition: draw n row indices per resample and sum those rows."""
    draws = np.random.default_rng(seed).integers(0, len(stats), size=(n_resamples, len(stats)))
    return stats[draws].sum(axis=1)


@pytest.mark.parametrize(
    "stats",
    [
        np.random.default_rng(1).integers(0, 60, size=(3_000, 10)).astype(np.float64),  # float32 is exact
        np.random.default_rng(2).random((3_000, 2)) * 30,  # fractional (TER): float64
        np.random.default_rng(3).integers(0, 2**20, size=(40, 3)).astype(np.float64),  # sums past 2**24
        np.random.default_rng(4).integers(-5, 5, size=(500, 4)).astype(np.float64),  # negative values
    ],
    ids=["integer", "fractional", "large", "negative"],
)
def test_sums_equal_materialised_resamples(stats: np.ndarray) -> None:
    ours = resampled_sums(stats, 1_100, np.random.default_rng(9))
    assert ours.shape == (1_100, stats.shape[1])
    np.testing.assert_allclose(ours, materialised(stats, 1_100, 9), rtol=1e-12, atol=1e-9)


def test_integer_sums_are_exact() -> None:
    stats = np.random.default_rng(5).integers(0, 60, size=(20_000, 10)).astype(np.float64)
    assert np.array_equal(resampled_sums(stats, 120, np.random.default_rng(3)), materialised(stats, 120, 3))


def test_one_dimensional_statistics_are_one_column() -> None:
    stats = np.arange(50, dtype=np.float64)
    assert np.array_equal(resampled_sums(stats, 7, np.random.default_rng(0)), materialised(stats[:, None], 7, 0))
