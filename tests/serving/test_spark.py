"""The Spark engine (local[2]) gives the local engine's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from serving.chunk import score_chunk
from serving.runs import row_hashes
from serving.spark import score_with_spark, session
from tests.serving.conftest import Workspace


@pytest.mark.slow
def test_spark_and_local_engines_give_equal_rows(workspace: Workspace) -> None:
    history, model = workspace.history, workspace.model
    as_of = history.exported_at
    features = build_features(history, as_of)
    features.index = features.index.astype(str)
    hashes = row_hashes(features, model.version)
    local = score_chunk(features, model, as_of, hashes).sort_values("deal_id", ignore_index=True)
    spark = session("local[2]")
    try:
        remote = score_with_spark(features, model, as_of, hashes, spark=spark, partitions=4)
    finally:
        spark.stop()
    remote = remote.sort_values("deal_id", ignore_index=True)
    assert list(remote.columns) == list(local.columns)
    assert remote["deal_id"].tolist() == local["deal_id"].tolist()
    np.testing.assert_allclose(
        remote["win_probability"].to_numpy(), local["win_probability"].to_numpy(), rtol=0, atol=1e-9
    )
    rest = [c for c in local.columns if c != "win_probability"]
    pd.testing.assert_frame_equal(remote[rest], local[rest])
