"""build_snapshots agrees with the brute-force reference on every cell of random histories."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import INFO_COLUMNS, LABEL_COLUMNS, build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import feature_spec
from tests.features.histories import random_history
from tests.reference.snapshots import reference_snapshots


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals and strings as plain objects (NaN as None) so both sides compare."""
    out = frame.reset_index(drop=True).copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype) or out[col].dtype == "str":
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def assert_matches_reference(history: History) -> None:
    dates = weekly_as_of_dates(history)
    spec = feature_spec(history)
    built = build_snapshots(history, dates)
    expected = reference_snapshots(history, dates, spec)
    columns = ["deal_id", "as_of", *INFO_COLUMNS, *(f.name for f in spec), *LABEL_COLUMNS]
    assert list(built.columns) == columns
    assert len(built) == len(expected) > 0
    pd.testing.assert_frame_equal(
        comparable(built), comparable(expected[columns]), check_dtype=False, rtol=1e-9
    )


@pytest.mark.parametrize("seed", range(8))
def test_snapshots_match_the_brute_force_reference(seed: int) -> None:
    assert_matches_reference(random_history(seed))
