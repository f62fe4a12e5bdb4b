"""The batch builds features slice by slice of open deals: the slices, put together, are the
frame ``build_features`` gives in one pass, value for value (the owners' open pipeline counts
every open deal, not only the slice's)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_feature_slices, build_features
from salesml.errors import ConfigError
from tests.features.histories import START, STEP, random_history


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize("slice_deals", [1, 4, 1000])
def test_slices_put_together_are_the_whole_frame(seed: int, slice_deals: int) -> None:
    history = random_history(seed, n_deals=40)
    for steps in (120, 300):
        as_of = START + steps * STEP
        whole = build_features(history, as_of)
        slices = list(build_feature_slices(history, as_of, slice_deals))
        assert all(0 < len(s) <= slice_deals for s in slices)
        together = pd.concat(slices) if slices else whole.iloc[:0]
        pd.testing.assert_frame_equal(together, whole)


def test_owner_pipeline_counts_deals_outside_the_slice() -> None:
    """Slices of one deal still see every open deal of the owner (the check can fail)."""
    history = random_history(1, n_deals=60)
    as_of = START + 300 * STEP
    whole = build_features(history, as_of)
    assert (whole["rep_open_deals"] > 1).any()
    ones = pd.concat(build_feature_slices(history, as_of, 1))
    pd.testing.assert_series_equal(ones["rep_open_deals"], whole["rep_open_deals"])


def test_slice_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="slice_deals"):
        next(build_feature_slices(random_history(0, n_deals=5), START, 0))


@pytest.mark.parametrize("seed", [0, 5])
def test_skipped_deals_are_left_out_and_the_others_keep_their_values(seed: int) -> None:
    """The incremental night builds only the deals it rescores: the rows of the others are the
    whole frame's (their owners' pipeline still counts the skipped deals)."""
    history = random_history(seed, n_deals=60)
    as_of = START + 300 * STEP
    whole = build_features(history, as_of)
    skip = pd.Index(whole.index[::3].astype(str))
    assert 0 < len(skip) < len(whole)
    rest = pd.concat(build_feature_slices(history, as_of, 4, skip=skip))
    pd.testing.assert_frame_equal(rest, whole.loc[~whole.index.isin(skip)])
    assert list(build_feature_slices(history, as_of, 4, skip=pd.Index(whole.index))) == []


def test_meeting_flags_of_a_categorical_type_column_are_the_strings_flags() -> None:
    """The batch loads activity types as categoricals and judges each category once."""
    from features._frame import _meetings

    values = ["Meeting", None, "call", "demo", "DEMO ", "meeting", "", "Demo", None, "email"]
    text = pd.Series(values, dtype="str")
    flags = _meetings(text)
    assert flags.tolist() == [True, False, False, True, False, True, False, True, False, False]
    assert _meetings(text.astype("category")).tolist() == flags.tolist()
    assert _meetings(pd.Series([None, None], dtype="category")).tolist() == [False, False]
