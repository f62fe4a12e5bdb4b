"""One rule for an open deal's amount and stage, for every reader of the pipeline.

The KPI engine counts an open deal at ``COALESCE(amount, products.list_price)`` (docs/kpis.md,
``open_pipeline``); ``pipeline_values`` applies that rule to rows in hand, so the report (and
the API) show the same open pipeline as ``salesml kpis`` and can say how much of it is an
estimate:

- **amount**: the deal's amount as of the date; where it has none, its product's list price
  (``estimated``); where neither exists, none (it adds 0 to sums).
- **stage**: the deal's stage as of the date.

"As of the date": the deals table holds export-time values, so they describe a deal only at the
data's as-of (``current``). Stage history describes any date (its last row at or before it).
At the data's as-of the amount is the deals table's (what the KPI engine reads), else stage
history's; the stage is stage history's, else the deals table's (an export without stage
history, like Maven's, still has stages). Before the data's as-of only stage history counts,
then the list price.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["list_prices", "pipeline_values"]

COLUMNS = ("amount", "estimated", "stage")


def list_prices(products: pd.DataFrame | None) -> pd.Series:
    """product → list price (the first price a product has; products without one left out)."""
    if products is None or not len(products) or not {"product", "list_price"} <= set(products):
        return pd.Series(dtype="float64")
    prices = products.assign(list_price=pd.to_numeric(products["list_price"], errors="coerce"))
    prices = prices.dropna(subset=["product", "list_price"]).drop_duplicates("product")
    return pd.Series(
        prices["list_price"].to_numpy(dtype="float64"), index=prices["product"].astype(str)
    )


def _blank(value: Any) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return value is pd.NA or value is pd.NaT or str(value).strip() == ""


def _column(frame: pd.DataFrame | None, name: str, index: pd.Index) -> pd.Series:
    """``frame[name]`` on ``index`` as objects, None where missing."""
    if frame is None or name not in frame:
        return pd.Series([None] * len(index), index=index, dtype="object")
    values = frame[name].reindex(index).astype("object")
    return pd.Series([None if _blank(v) else v for v in values], index=index, dtype="object")


def _amounts(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _stages(values: pd.Series) -> pd.Series:
    return pd.Series([None if v is None else str(v) for v in values], values.index, "object")


def pipeline_values(
    deals: pd.DataFrame,
    products: pd.DataFrame | None,
    then: pd.DataFrame | None = None,
    *,
    current: bool = True,
) -> pd.DataFrame:
    """Each deal's ``amount``, whether it was ``estimated`` from a list price, and ``stage``.

    Args:
        deals: the deals table's rows of the deals (``deal_id``; ``product``, ``amount``,
            ``stage`` where the export has them).
        products: the products table (``product``, ``list_price``), or None.
        then: the deals' ``amount`` and ``stage`` as stage history had them at the date,
            indexed by deal_id (missing or NaN where it has none), or None.
        current: the date is the data's as-of, when the deals table's values hold.

    Returns:
        One row per deal, indexed by ``deal_id`` (text): ``amount`` (float, NaN when neither
        an amount nor a list price exists), ``estimated`` (bool) and ``stage`` (text or None).
    """
    index = pd.Index(deals["deal_id"].astype(str), name="deal_id")
    rows = deals.set_axis(index)
    if then is not None:
        then = then.set_axis(then.index.astype(str))
    own = _amounts(_column(rows, "amount", index)) if current else pd.Series(np.nan, index=index)
    amount = own.fillna(_amounts(_column(then, "amount", index)))
    prices = list_prices(products)
    product = _column(rows, "product", index)
    price = product.map(lambda p: np.nan if p is None else prices.get(str(p), np.nan))
    estimated = amount.isna() & _amounts(price).notna()
    amount = amount.fillna(_amounts(price))
    stage = _stages(_column(then, "stage", index))
    if current:
        own_stage = _stages(_column(rows, "stage", index))
        stage = pd.Series(
            [s if s is not None else o for s, o in zip(stage, own_stage, strict=True)],
            index=index,
            dtype="object",
        )
    out = pd.DataFrame({"amount": amount, "estimated": estimated}, index=index)
    out["stage"] = stage
    return out
