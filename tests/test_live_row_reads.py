"""The one-row score path's reads (issue 18, live answers) give what the Series-by-Series reads
gave: a frame's stored column values for the model matrix, numeric columns, categorical texts
and dtypes; a few what-if values coded by the vocabulary's dict; the timing windows' CDF in one
broadcast. Random frames of every dtype the feature frames use, seeds fixed beforehand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesml.actions.engine import few_values, frame_values
from salesml.models.contract import (
    FeatureContract,
    column_arrays,
    column_values,
    float_column,
)
from salesml.models.timing.bundle import _cdf_at, _cdf_at_days

VOCAB = ["Discovery", "Proposal", "Negotiation", "missing"]


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A frame with a float, an int, a string-typed number, categoricals on another coding
    than the vocabulary (and with unseen values), Arrow strings and object strings."""
    cats = ["Proposal", "Unseen", "Discovery", "Negotiation"]
    codes = rng.integers(-1, len(cats), n)
    return pd.DataFrame(
        {
            "amount": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 1e5, n)),
            "count": rng.integers(0, 9, n),
            "text_number": pd.array([str(v) for v in rng.integers(0, 5, n)], dtype="str"),
            "stage": pd.Categorical.from_codes(codes, categories=cats),
            "owner_id": pd.array([f"rep-{v}" for v in rng.integers(0, 3, n)], dtype="str"),
            "product": pd.Series(rng.choice(["Proposal", "Negotiation", "x", None], n)).astype(
                object
            ),
        },
        index=pd.Index([f"d{i}" for i in range(n)], name="deal_id"),
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [1, 3, 70])
def test_model_matrix_from_stored_values_equals_column_by_column(seed: int, n: int) -> None:
    frame = _frame(np.random.default_rng(seed), n)
    kinds = {
        "amount": "numeric",
        "count": "numeric",
        "text_number": "numeric",
        "stage": "categorical",
        "product": "categorical",
    }
    contract = FeatureContract(list(kinds), kinds, {"stage": VOCAB, "product": VOCAB})
    expected = np.column_stack([contract.encode(name, frame[name]) for name in kinds])
    np.testing.assert_array_equal(contract.model_matrix(frame), expected)
    # The same through the public path (no stored values: duplicate names are not read so).
    assert column_arrays(frame.rename(columns={"count": "amount"})) == {}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stored_values_reads_equal_series_reads(seed: int) -> None:
    frame = _frame(np.random.default_rng(seed), 4)
    for name in frame.columns:
        stored = column_values(frame, name)
        assert stored is not None and stored.dtype == frame[name].dtype
        if name in ("amount", "count", "text_number"):
            np.testing.assert_array_equal(
                float_column(frame, name),
                pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float),
            )
        assert [str(v) for v in frame_values(frame, name)] == [
            str(v) for v in few_values(frame[name])
        ]
    assert column_values(frame, "absent") is None
    # float_column copies: writing into it leaves the frame alone.
    column = float_column(frame, "amount")
    column[:] = -1.0
    assert not (frame["amount"] == -1.0).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_few_what_if_values_coded_as_get_indexer_codes_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice(["Proposal", "Won", "missing", "Discovery", None], 80)
    contract = FeatureContract(["stage"], {"stage": "categorical"}, {"stage": VOCAB})
    index = pd.Index(VOCAB, dtype=object)
    for n in (1, 2, 64, 65, 80):  # the dict up to 64 rows, get_indexer beyond
        column = pd.Series(np.asarray(values[:n], dtype=object), dtype=object)
        present = column.notna().to_numpy()
        expected = np.full(n, np.nan)
        codes = index.get_indexer(pd.Index(column[present].astype(str))).astype(float)
        codes[codes < 0] = np.nan
        expected[present] = codes
        np.testing.assert_array_equal(contract.encode("stage", column), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cdf_at_many_days_equals_one_call_per_day(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = np.array([0, 7, 14, 30, 60, 90, 120, 180, 240, 300, 365, 450, 810], dtype=float)
    cdf = np.sort(rng.random((int(rng.integers(1, 30)), len(grid))), axis=1)
    days = np.concatenate([[-3.0, 0.0, 810.0, 900.0], rng.uniform(0, 820, 6)])
    many = _cdf_at_days(grid, cdf, days)
    for k, day in enumerate(days):
        np.testing.assert_array_equal(many[:, k], _cdf_at(grid, cdf, np.full(len(cdf), day)))
