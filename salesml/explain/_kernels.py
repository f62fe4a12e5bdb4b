"""Numba kernels of ``salesml.explain.treeshap`` (compiled on first use, cached on disk)."""
# mypy: disable-error-code="misc,untyped-decorator"

from __future__ import annotations

from typing import Any

import numba
import numpy as np

ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold
BLOCK = 256  # rows per work item


def set_threads(n: int) -> None:
    """Use at most ``n`` threads (never more than numba started with)."""
    started = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(n, started)))


@numba.njit(cache=True, nogil=True)
def _leaf_shapley(
    zero: Any, ones: Any, k: int, value: float, poly: Any, quotient: Any, out: Any
) -> None:
    """Shapley values of the product game ``v · Π_j (o_j if j ∈ S else z_j)`` into ``out``.

    ``P(t) = Π_j (z_j + o_j t)``; for feature ``i`` the coalition polynomial is ``P / (z_i +
    o_i t)`` and ``φ_i = v (o_i − z_i) Σ_s w(s, k) [t^s]``, ``w(s, k) = s!(k−s−1)!/k!``.
    """
    for s in range(k + 1):
        poly[s] = 0.0
    poly[0] = 1.0
    for j in range(k):
        z, o = zero[j], ones[j]
        for s in range(j + 1, 0, -1):
            poly[s] = poly[s] * z + poly[s - 1] * o
        poly[0] = poly[0] * z
    for i in range(k):
        z = zero[i]
        if ones[i] > 0.0:
            quotient[k - 1] = poly[k]
            for s in range(k - 1, 0, -1):
                quotient[s - 1] = poly[s] - z * quotient[s]
        else:
            for s in range(k):
                quotient[s] = poly[s] / z
        total = 0.0
        binom = 1.0  # C(k - 1, s)
        for s in range(k):
            total += quotient[s] / (k * binom)
            binom = binom * (k - 1 - s) / (s + 1)
        out[i] = value * (ones[i] - z) * total


@numba.njit(cache=True)
def fill_tables(
    unique_offset: Any, zero: Any, leaf_value: Any, table_offset: Any, table: Any
) -> None:
    """Per tabled leaf: its ``k`` values for each of the ``2^k`` patterns (pattern-major)."""
    n_leaves = leaf_value.shape[0]
    kmax = 1
    for leaf in range(n_leaves):
        kmax = max(kmax, unique_offset[leaf + 1] - unique_offset[leaf])
    poly = np.empty(kmax + 1)
    quotient = np.empty(kmax + 1)
    ones = np.empty(kmax)
    for leaf in range(n_leaves):
        start = table_offset[leaf]
        if start < 0:
            continue
        lo = unique_offset[leaf]
        k = unique_offset[leaf + 1] - lo
        z = zero[lo : lo + k]
        for mask in range(1 << k):
            for j in range(k):
                ones[j] = 1.0 if (mask >> j) & 1 else 0.0
            _leaf_shapley(
                z,
                ones,
                k,
                leaf_value[leaf],
                poly,
                quotient,
                table[start + mask * k : start + (mask + 1) * k],
            )


@numba.njit(cache=True, nogil=True, inline="always")
def _goes_left(
    value: float,
    node: int,
    node_threshold: Any,
    node_categorical: Any,
    node_missing: Any,
    node_default_left: Any,
    node_cat_offset: Any,
    node_cat_words: Any,
    cat_bits: Any,
) -> bool:
    if node_categorical[node]:
        if np.isnan(value):
            return False
        code = int(value)
        if code < 0:
            return False
        word = code // 32
        if word >= node_cat_words[node]:
            return False
        return bool((cat_bits[node_cat_offset[node] + word] >> (code % 32)) & 1)
    missing = node_missing[node]
    if np.isnan(value) and missing != 2:
        value = 0.0
    if (missing == 1 and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD) or (
        missing == 2 and np.isnan(value)
    ):
        return bool(node_default_left[node])
    return bool(value <= node_threshold[node])


@numba.njit(cache=True, parallel=True)
def shap_rows(
    x: Any,
    node_feature: Any,
    node_threshold: Any,
    node_categorical: Any,
    node_missing: Any,
    node_default_left: Any,
    node_cat_offset: Any,
    node_cat_words: Any,
    cat_bits: Any,
    node_left: Any,
    node_right: Any,
    node_pos: Any,
    tree_node_offset: Any,
    leaf_value: Any,
    unique_offset: Any,
    unique_feature: Any,
    unique_zero: Any,
    table_offset: Any,
    table: Any,
    out: Any,
) -> None:
    """Add every tree's contributions of every row of ``x`` into ``out`` (rows in parallel).

    Per row and tree, a depth-first walk evaluates each internal node's decision once and
    carries the leaf pattern down: the bit of the node's feature (``node_pos``, the same for
    every leaf below it) is cleared on the side the row does not take. Each leaf then adds the
    values of its pattern (a table look-up, or ``_leaf_shapley`` for untabled leaves).
    """
    n_rows = x.shape[0]
    n_trees = tree_node_offset.shape[0] - 1
    kmax = 1
    depth = 1
    for leaf in range(leaf_value.shape[0]):
        kmax = max(kmax, unique_offset[leaf + 1] - unique_offset[leaf])
    for t in range(n_trees):
        depth = max(depth, tree_node_offset[t + 1] - tree_node_offset[t] + 1)
    n_blocks = (n_rows + BLOCK - 1) // BLOCK
    for block in numba.prange(n_blocks):
        lo = block * BLOCK
        hi = min(n_rows, lo + BLOCK)
        stack_node = np.empty(depth, dtype=np.int64)
        stack_mask = np.empty(depth, dtype=np.int64)
        ones = np.empty(kmax)
        poly = np.empty(kmax + 1)
        quotient = np.empty(kmax + 1)
        values = np.empty(kmax)
        # tree-major inside a block of rows: one tree's tables stay in cache for all its rows
        for t in range(n_trees):
            root = tree_node_offset[t]
            if tree_node_offset[t + 1] == root:
                continue  # a single-leaf tree moves only the expected value
            for row in range(lo, hi):
                stack_node[0] = root
                stack_mask[0] = -1
                sp = 1
                while sp > 0:
                    sp -= 1
                    node = stack_node[sp]
                    mask = stack_mask[sp]
                    goes_left = _goes_left(
                        x[row, node_feature[node]],
                        node,
                        node_threshold,
                        node_categorical,
                        node_missing,
                        node_default_left,
                        node_cat_offset,
                        node_cat_words,
                        cat_bits,
                    )
                    cleared = mask & ~(1 << node_pos[node])
                    for side in range(2):
                        if side == 0:
                            child = node_left[node]
                            pattern = mask if goes_left else cleared
                        else:
                            child = node_right[node]
                            pattern = cleared if goes_left else mask
                        if child >= 0:
                            stack_node[sp] = child
                            stack_mask[sp] = pattern
                            sp += 1
                            continue
                        leaf = -child - 1
                        u0 = unique_offset[leaf]
                        k = unique_offset[leaf + 1] - u0
                        pattern &= (1 << k) - 1
                        start = table_offset[leaf]
                        if start >= 0:
                            base = start + pattern * k
                            for j in range(k):
                                out[row, unique_feature[u0 + j]] += table[base + j]
                        else:
                            for j in range(k):
                                ones[j] = 1.0 if (pattern >> j) & 1 else 0.0
                            _leaf_shapley(
                                unique_zero[u0 : u0 + k],
                                ones,
                                k,
                                leaf_value[leaf],
                                poly,
                                quotient,
                                values,
                            )
                            for j in range(k):
                                out[row, unique_feature[u0 + j]] += values[j]
