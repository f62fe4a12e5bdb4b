"""The Spark engine of the batch: the same ``score_chunk`` inside ``mapInPandas`` workers.

Features are built on the driver (one vectorised pass over the history), shipped to Spark as
rows, and scored in parallel by ``serving.chunk.score_chunk`` — the function the local engine
runs — with the models object sent to the workers in the function's closure. The output schema
is read off one row scored on the driver, so whatever columns ``score_features`` returns come
back, with the same dtypes as the local engine's rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from salesml.settings import Settings
from serving.chunk import score_chunk
from serving.runs import HASH_COLUMN

DEFAULT_MASTER = "local[*]"


def _spark_type(dtype: Any) -> Any:
    from pyspark.sql import types as spark_types

    if pd.api.types.is_bool_dtype(dtype):
        return spark_types.BooleanType()
    if pd.api.types.is_integer_dtype(dtype):
        return spark_types.LongType()
    if pd.api.types.is_float_dtype(dtype):
        return spark_types.DoubleType()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return spark_types.TimestampNTZType()
    return spark_types.StringType()


def session(master: str | None = None) -> Any:
    """A Spark session for scoring (UTC, Arrow on, no UI)."""
    from pyspark.sql import SparkSession

    # The workers run this Python (the one with salesml and its packages installed).
    Settings.export_spark_python(sys.executable)
    return (
        SparkSession.builder.master(master or DEFAULT_MASTER)
        .appName("salesml-score")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def score_with_spark(
    features: pd.DataFrame,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    *,
    master: str | None = None,
    partitions: int | None = None,
    spark: Any = None,
) -> pd.DataFrame:
    """Score rows of ``features`` (index deal_id) on Spark; the rows ``score_chunk`` gives."""
    from pyspark.sql import types as spark_types

    if len(features) == 0:
        return score_chunk(features, model, as_of, hashes)
    sample = score_chunk(features.head(1), model, as_of, hashes)
    schema = spark_types.StructType(
        [
            spark_types.StructField(str(c), _spark_type(sample[c].dtype), True)
            for c in sample.columns
        ]
    )
    categories = {
        str(c): features[c].cat.categories
        for c in features.columns
        if isinstance(features[c].dtype, pd.CategoricalDtype)
    }
    dtypes = {str(c): features[c].dtype for c in features.columns}
    index_name = features.index.name or "deal_id"
    shipped = features.copy()
    for column in categories:
        shipped[column] = shipped[column].astype(object).where(shipped[column].notna(), None)
    shipped = shipped.reset_index(names=index_name)
    shipped[index_name] = shipped[index_name].astype(str)
    own_hashes = hashes is not None
    if own_hashes:
        assert hashes is not None
        shipped[HASH_COLUMN] = hashes.reindex(features.index.astype(str)).to_numpy()
    spark = spark or session(master)
    n = partitions or max(1, int(spark.sparkContext.defaultParallelism))

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            frame = batch.set_index(index_name)
            frame.index.name = index_name
            part_hashes = frame.pop(HASH_COLUMN) if own_hashes else None
            for column, cats in categories.items():
                frame[column] = pd.Categorical(frame[column], categories=cats)
            for column, dtype in dtypes.items():
                if column not in categories and frame[column].dtype != dtype:
                    frame[column] = frame[column].astype(dtype)
            yield score_chunk(frame, model, as_of, part_hashes)

    frame = spark.createDataFrame(shipped).repartition(n)
    result = frame.mapInPandas(score_partition, schema).toPandas()
    return conform(result, sample)


def conform(rows: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``like``'s columns and dtypes (Spark returns datetimes in ns, etc.)."""
    out = rows[list(like.columns)].copy()
    for column in like.columns:
        want = like[column].dtype
        if out[column].dtype != want:
            if pd.api.types.is_integer_dtype(want) and out[column].isna().any():
                continue
            out[column] = out[column].astype(want)
        if want == np.dtype(object):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    out.index = np.arange(len(out))
    return out
