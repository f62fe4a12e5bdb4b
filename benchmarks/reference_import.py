"""A plain-pandas import of a canonical export: the peer ``make bench`` measures ours against.

It does the same job as ``salesml import --format canonical`` into an empty warehouse — parse
every column, apply the same row rules, drop conflicting duplicates, reject orphan child rows,
write the tables to DuckDB — the way one would write it with pandas alone.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from salesml.schemas import IMPORT_ORDER, TABLES, TableSchema
from salesml.warehouse import create_schema


def _parse(df: pd.DataFrame, table: TableSchema) -> tuple[pd.DataFrame, pd.Series]:
    bad = pd.Series(False, index=df.index)
    out = pd.DataFrame(index=df.index)
    for col in table.columns:
        if col.name not in df.columns:
            out[col.name] = None
            continue
        raw = df[col.name]
        if col.kind in ("timestamp", "date"):
            parsed = pd.to_datetime(raw, errors="coerce", utc=True).dt.tz_localize(None)
            if col.kind == "date":
                parsed = parsed.dt.normalize()
        elif col.kind in ("float", "int"):
            parsed = pd.to_numeric(raw, errors="coerce")
        elif col.kind == "bool":
            parsed = raw.astype("boolean")
        else:
            parsed = raw.astype("string").str.strip().replace("", pd.NA)
        bad |= raw.notna() & parsed.isna()
        if not col.nullable:
            bad |= parsed.isna()
        if col.minimum is not None:
            bad |= parsed.lt(col.minimum).fillna(False).astype(bool)
        if col.choices is not None:
            bad |= parsed.notna() & ~parsed.isin(col.choices)
        out[col.name] = parsed
    if table.name == "deals":
        closed = out["status"].isin(["won", "lost"])
        bad |= closed & out["closed_at"].isna()
        bad |= (out["status"] == "open") & out["closed_at"].notna()
        bad |= (out["closed_at"] < out["created_at"]).fillna(False).astype(bool)
    for col in df.columns:
        if col not in out.columns:
            out[col] = df[col]
    return out, bad


def import_folder(folder: Path, warehouse: Path) -> dict[str, int]:
    """Import ``folder`` into a fresh DuckDB file; returns rows written per table."""
    con = duckdb.connect(str(warehouse))
    create_schema(con)
    written: dict[str, int] = {}
    deal_ids: pd.Index | None = None
    for name in IMPORT_ORDER:
        path = folder / f"{name}.parquet"
        if not path.exists():
            continue
        table = TABLES[name]
        df, bad = _parse(pd.read_parquet(path), table)
        df = df[~bad]
        if table.derived_key and df[table.key[0]].isna().any():
            missing = df[table.key[0]].isna()
            others = [c for c in table.column_names if c != table.key[0]]
            df.loc[missing, table.key[0]] = pd.util.hash_pandas_object(
                df.loc[missing, others], index=False
            ).astype(str)
        keys = list(table.key)
        dup = df.duplicated(keys, keep=False)
        if dup.any():
            content = pd.util.hash_pandas_object(df[dup], index=False)
            conflicts = content.groupby([df.loc[dup, k] for k in keys]).transform("nunique") > 1
            df = df.drop(index=conflicts[conflicts].index).drop_duplicates(keys)
        if name == "deals":
            deal_ids = pd.Index(df["deal_id"])
        elif "deal_id" in df.columns and deal_ids is not None:
            known = df["deal_id"].isin(deal_ids) | (df["deal_id"].isna() & (name == "leads"))
            df = df[np.asarray(known)]
        extras = [c for c in df.columns if c not in table.column_names]
        for c in extras:
            kind = "DOUBLE" if pd.api.types.is_numeric_dtype(df[c]) else "VARCHAR"
            con.execute(f'ALTER TABLE {name} ADD COLUMN "attr_{c}" {kind}')
        frame = df.rename(columns={c: f"attr_{c}" for c in extras})
        con.register("frame", frame)
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM frame")
        con.unregister("frame")
        written[name] = len(frame)
    con.close()
    return written
