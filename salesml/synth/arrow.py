"""Memory-lean Arrow column builders: fixed-width ids and dictionary-encoded strings.

String columns are never built as Python objects. Ids are written digit by digit into one
byte buffer; categorical and foreign-key columns are ``DictionaryArray`` s (integer indices
into a small vocabulary or into the parent table's id array), which Parquet stores natively.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

IndexArray = npt.NDArray[np.integer]


def id_width(n: int, minimum: int) -> int:
    """Digits needed to number ``1..n``, at least ``minimum``."""
    return max(minimum, len(str(max(n, 1))))


def fixed_ids(prefix: str, numbers: IndexArray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array, without Python strings.

    Args:
        prefix: ASCII prefix such as ``"D"``.
        numbers: Non-negative integers, each with at most ``width`` digits.
        width: Number of digits.

    Returns:
        A ``pa.string()`` (or ``pa.large_string()`` when over 2 GiB) array.
    """
    n = len(numbers)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    row = len(head) + width
    buf = np.empty((n, row), dtype=np.uint8)
    buf[:, : len(head)] = head
    rest = np.asarray(numbers, dtype=np.int64).copy()
    for k in range(row - 1, len(head) - 1, -1):
        buf[:, k] = 48 + rest % 10
        rest //= 10
    large = n * row >= 2**31
    offsets = np.arange(0, (n + 1) * row, row, dtype=np.int64 if large else np.int32)
    kind = pa.large_string() if large else pa.string()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])


def sequential_ids(prefix: str, n: int, min_width: int) -> pa.Array:
    """Ids ``prefix`` + ``1..n`` zero-padded to a common width."""
    return fixed_ids(prefix, np.arange(1, n + 1, dtype=np.int64), id_width(n, min_width))


def categorical(codes: IndexArray, vocabulary: Sequence[str] | pa.Array) -> pa.Array:
    """A dictionary-encoded string column; negative codes become nulls.

    Args:
        codes: Index into ``vocabulary`` per row, negative for null.
        vocabulary: The distinct values (a sequence of str or an Arrow string array).

    Returns:
        A ``DictionaryArray`` with int32 indices.
    """
    codes = np.asarray(codes)
    mask = codes < 0
    indices = pa.array(
        np.where(mask, 0, codes).astype(np.int32),
        type=pa.int32(),
        mask=mask if mask.any() else None,
    )
    values = (
        vocabulary if isinstance(vocabulary, pa.Array) else pa.array(list(vocabulary), pa.string())
    )
    return pa.DictionaryArray.from_arrays(indices, values)


def join_strings(parts: Sequence[pa.Array | str], separator: str = "") -> pa.Array:
    """Element-wise concatenation of string arrays (and scalars) into one plain string array."""
    plain = [p if isinstance(p, str) else _decoded(p) for p in parts]
    return pc.binary_join_element_wise(*plain, separator)


def _decoded(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr
