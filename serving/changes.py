"""What changed since the last score run: per-deal hashes of the tracked inputs.

``salesml score --changed`` rescores a deal when one of *its own inputs* changed since the run
it was last scored in, and copies its row otherwise. A deal's inputs are:

* its record in ``deals`` (stage, amount, owner, expected close date, custom attributes, …);
* its stage changes and its activities (those stamped at or before the run's ``as_of``);
* its account's record;
* the model version (a new champion rescores everything).

Features that move without any of these changing — time windows (days since the last activity,
days in stage), the rep's track record and open pipeline, population statistics — are refreshed
by age instead: a copied row older than ``max_age_days`` (``--max-age``, default 7) is rescored
too, so a nightly ``--changed`` run is never more than a week behind on them. Each row keeps the
``as_of`` it was scored at, so a reader can always tell a copied row from a fresh one.

The hashes are order-independent sums of row hashes (pandas' ``hash_pandas_object``), so
re-importing the same export in another row order changes nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.history import History

MIX = np.uint64(0x9E3779B97F4A7C15)
LOW = np.uint64(0xFFFFFFFF)


# Rows hashed at a time: what the hashing holds beyond the table is a few arrays of this many
# numbers (and the distinct text values of a block, the only Python strings it makes).
BLOCK_ROWS = 250_000
U8MAX = np.uint64(np.iinfo(np.uint64).max)


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """``pd.util.hash_pandas_object(frame, index=False)``, the same numbers, block by block."""
    out = np.empty(len(frame), dtype=np.uint64)
    for start in range(0, len(frame), BLOCK_ROWS):
        block = frame.iloc[start : start + BLOCK_ROWS]
        out[start : start + len(block)] = _combined(
            [_column_hashes(block[c]) for c in block.columns], len(block)
        )
    return out


def _column_hashes(values: pd.Series) -> np.ndarray:
    """``pd.util.hash_array`` of one column, the same numbers. Text and categoricals are hashed
    once per distinct value present (text factorised in Arrow), not once per row."""
    if not isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
        extension = isinstance(values.dtype, pd.api.extensions.ExtensionDtype)
        array = values.array if extension else values.to_numpy()
        return np.asarray(pd.util.hash_array(array), dtype=np.uint64)
    # A categorical's own hashing would hash all its categories for every block of rows.
    code, uniques = pd.factorize(values, use_na_sentinel=True)
    hashed = pd.util.hash_array(np.asarray(uniques), categorize=False)
    out = np.full(len(values), U8MAX, dtype=np.uint64)
    known = code >= 0
    out[known] = hashed[code[known]]
    return out


def _combined(columns: list[np.ndarray], length: int) -> np.ndarray:
    """Row hashes from column hashes, as ``hash_pandas_object`` combines them (CPython's
    tuple hash; ``pandas.core.util.hashing.combine_hash_arrays``)."""
    if not columns:
        return np.full(length, 0x345678 + 97531, dtype=np.uint64)
    mult = np.uint64(1000003)
    out = np.zeros(length, dtype=np.uint64) + np.uint64(0x345678)
    for i, column in enumerate(columns):
        inverse = len(columns) - i
        out ^= column
        out *= mult
        mult += np.uint64(82520 + inverse + inverse)
    out += np.uint64(97531)
    return out


def _positions(keys: pd.Series | pd.Index, index: pd.Index) -> np.ndarray:
    """Position of each key in ``index`` (-1 when absent), matched as text in Arrow (no
    Python string per key)."""
    if len(index) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    if isinstance(keys.dtype, pd.CategoricalDtype):  # each category matched once
        values = pd.Categorical(keys)
        found = np.append(_positions(pd.Index(values.categories), index), -1)
        return np.asarray(found[values.codes], dtype=np.int64)  # code -1 (missing): the -1
    return positions(pa.array(keys, type=pa.string(), from_pandas=True), index)


def positions(keys: pa.Array | pa.ChunkedArray, index: pd.Index) -> np.ndarray:
    """Position of each key (Arrow text) in ``index`` (-1 when absent or missing), matched in
    Arrow."""
    if len(index) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    found = pc.index_in(
        keys, value_set=pa.array(index, type=pa.string(), from_pandas=True), skip_nulls=True
    )
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _aligned(hashes: np.ndarray, keys: pd.Index, index: pd.Index) -> np.ndarray:
    """``hashes`` (one per unique key) looked up for each of ``index`` (0 where absent)."""
    if len(hashes) == 0:
        return np.zeros(len(index), dtype=np.uint64)
    position = keys.get_indexer(index)
    return np.where(position >= 0, hashes[np.maximum(position, 0)], np.uint64(0)).astype(np.uint64)


def _table_sums(table: pd.DataFrame, ids: pd.Index, stamp: str, as_of: pd.Timestamp) -> np.ndarray:
    """Order-independent combination of the row hashes of each deal of ``ids`` in ``table``
    (rows stamped after ``as_of`` left out; unknown times count), 0 for a deal with none.
    Deals are matched once for the whole table, rows hashed block by block: what it holds
    beyond the table is a few numbers per row."""
    n = len(ids)
    lo, hi = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    rows = np.zeros(n, dtype=np.int64)
    position = _positions(table["deal_id"], ids)
    mask = position >= 0
    if stamp in table:
        mask &= ~(table[stamp] > as_of).to_numpy(dtype=bool)
    for start in range(0, len(table), BLOCK_ROWS):
        block_mask = mask[start : start + BLOCK_ROWS]
        if not block_mask.any():
            continue
        hashes = _row_hashes(table.iloc[start : start + BLOCK_ROWS][block_mask])
        mine = position[start : start + BLOCK_ROWS][block_mask]
        # Sums of the two 32-bit halves cannot overflow int64; mixing them back gives 64 bits.
        np.add.at(lo, mine, (hashes & LOW).astype(np.int64))
        np.add.at(hi, mine, (hashes >> np.uint64(32)).astype(np.int64))
        np.add.at(rows, mine, 1)
    out = np.zeros(n, dtype=np.uint64)
    found = rows > 0
    out[found] = (lo[found].astype(np.uint64) * MIX) ^ (
        hi[found].astype(np.uint64) * (MIX + np.uint64(2))
    )
    return out


def input_hashes(
    history: History, deal_ids: pd.Index, as_of: pd.Timestamp, model_version: str
) -> pd.Series:
    """Per deal of ``deal_ids``: a 16-hex-digit hash of its inputs (see the module docstring)."""
    codes = input_hash_codes(history, deal_ids, as_of, model_version)
    return pd.Series(hash_text(codes.to_numpy()), index=codes.index, name="input_hash")


# A byte's value as a digit of ``hash_text`` (lower-case hex), 255 where it is not one: text
# that ``hash_text`` cannot have written parses as no hash, as it never equalled one.
HEX_VALUE = np.full(256, 255, dtype=np.uint8)
HEX_VALUE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)


def hash_text(codes: np.ndarray) -> list[str]:
    """``input_hash_codes`` as the 16-hex-digit text a score run stores."""
    return [f"{int(v):016x}" for v in codes]


def parse_hash_text(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Stored hash text (Arrow strings) back as ``input_hash_codes`` numbers, and whether each
    value is one (16 hex digits; missing or malformed ones are not: such a row never matches).
    Read from Arrow's buffers, without a Python string per row."""
    array = pc.cast(text, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], type=pa.string())
    n = len(array)
    lengths = pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False)
    valid = np.asarray(lengths == 16, dtype=bool)
    codes = np.zeros(n, dtype=np.uint64)
    if not valid.any():
        return codes, valid
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[array.offset : array.offset + n]
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    start = int(offsets[0])
    if valid.all():  # every value 16 bytes long: one block of text, no gaps
        text_bytes = data[start : start + 16 * n].reshape(n, 16)
    else:
        text_bytes = data[offsets[valid][:, None] + np.arange(16)]
    digits = HEX_VALUE[text_bytes]
    hexadecimal = (digits != 255).all(axis=1)
    octets = np.ascontiguousarray((digits[:, 0::2] << 4) | (digits[:, 1::2] & 15))
    values = octets.view(">u8").reshape(-1).astype(np.uint64)
    where = np.flatnonzero(valid)
    codes[where] = np.where(hexadecimal, values, np.uint64(0))
    valid[where] = hexadecimal
    return codes, valid


def input_hash_codes(
    history: History, deal_ids: pd.Index, as_of: pd.Timestamp, model_version: str
) -> pd.Series:
    """``input_hashes`` as unsigned 64-bit numbers (8 bytes a deal, where the text costs ~70):
    the batch holds these for every open deal and writes the text slice by slice."""
    ids = pd.Index(deal_ids.astype(str))
    as_of = pd.Timestamp(as_of)
    all_ids = history.deals["deal_id"].astype(str)
    mine = _positions(all_ids, ids) >= 0  # pandas' isin makes a Python string per id
    deals, deal_ids = history.deals[mine], pd.Index(all_ids[mine])
    combined = _aligned(_row_hashes(deals), deal_ids, ids)
    for table, stamp in (
        (history.stage_history, "changed_at"),
        (history.activities, "occurred_at"),
    ):
        combined = (combined * MIX) ^ _table_sums(table, ids, stamp, as_of)
    accounts = history.accounts
    if len(accounts) and "account_id" in deals:
        account_text = accounts["account_id"].astype(str)
        if len(deals) < len(accounts):  # a few deals (the live applier's): their accounts only
            theirs = pd.Index(pd.unique(deals["account_id"].astype(str).to_numpy(dtype=object)))
            kept = _positions(account_text, theirs) >= 0  # in order: the first row of each
            accounts, account_text = accounts[kept], account_text[kept]
        account_ids = pd.Index(account_text)
        unique = ~account_ids.duplicated()
        account_of = pd.Series(deals["account_id"].astype(str).to_numpy(), index=deal_ids).reindex(
            ids
        )
        account_hash = _aligned(
            _row_hashes(accounts)[unique], account_ids[unique], pd.Index(account_of)
        )
        combined = (combined * MIX) ^ account_hash
    salt = pd.util.hash_array(np.asarray([str(model_version)], dtype=object))[0]
    mixed = (combined ^ np.uint64(salt)) * MIX
    return pd.Series(np.asarray(mixed, dtype=np.uint64), index=ids, name="input_hash")
