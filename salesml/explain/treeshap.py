"""Exact path-dependent TreeSHAP for LightGBM boosters, fast on large batches.

LightGBM's own ``pred_contrib=True`` (which ``shap.TreeExplainer`` calls for LightGBM models)
runs the recursive TreeSHAP algorithm of Lundberg et al. (2020): for every row and tree it
walks the whole tree, extending and unwinding a path of up to depth ``D``, ``O(L·D²)`` work per
tree. This module computes the same values differently (the "Fast TreeSHAP v2" idea of Yang,
2021):

* A leaf ``l`` with value ``v`` reached through unique features ``U`` (``k = |U|``) adds to the
  path-dependent value function ``v · Π_{j∈U} (o_j if j ∈ S else z_j)``, where ``z_j`` is the
  product of the cover fractions of the path's splits on ``j`` and ``o_j ∈ {0, 1}`` says whether
  the row satisfies all of them. The Shapley values of that product game depend on the row only
  through the bit pattern ``o``.
* So each leaf gets a table of its ``k`` Shapley values for each of the ``2^k`` patterns,
  computed once per model (``O(2^k·k²)`` per leaf, a fraction of a second for a whole model).
* Per row and tree, a depth-first walk evaluates each internal node's decision once and
  carries the pattern down (a node clears its feature's bit on the side the row does not
  take); each leaf then adds the values of its pattern, a table look-up: ``O(L + Σ k)``.

Leaves with too many unique features for the table budget are computed on the fly from their
pattern (``O(k²)``). Decisions follow LightGBM's ``NumericalDecision`` / ``CategoricalDecision``
exactly (missing types, default directions, category bitsets), and the covers are LightGBM's
``internal_count`` / ``leaf_count``, so the values equal ``pred_contrib`` up to float rounding
(the tests and ``benchmarks/drivers.py`` check ≤ 1e-6; observed ~1e-14).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from salesml.explain import _kernels
from salesml.settings import Settings

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TABLE_BUDGET_BYTES = 256 * 1024**2  # per model; leaves beyond it are computed on the fly
MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class TreeEnsemble:
    """A LightGBM model flattened into arrays for the kernels (see the module docstring)."""

    n_features: int
    expected_value: float
    # internal nodes (global ids); children >= 0 are nodes, < 0 are leaves ~(-leaf - 1)
    node_feature: IntArray
    node_threshold: FloatArray
    node_categorical: IntArray
    node_missing: IntArray
    node_default_left: IntArray
    node_cat_offset: IntArray
    node_cat_words: IntArray
    cat_bits: IntArray
    node_left: IntArray
    node_right: IntArray
    node_pos: IntArray  # the node's feature's place among the unique features below it
    tree_node_offset: IntArray
    tree_leaf_offset: IntArray
    # leaves (global ids)
    leaf_value: FloatArray
    leaf_path_offset: IntArray
    path_node: IntArray
    path_left: IntArray
    path_pos: IntArray
    leaf_unique_offset: IntArray
    unique_feature: IntArray
    unique_zero: FloatArray
    leaf_table_offset: IntArray  # -1: no table, computed on the fly
    table: FloatArray

    @property
    def table_bytes(self) -> int:
        return int(self.table.nbytes)


# Set in a batch worker process: its share of the cores (0: ``Settings.threads``).
_THREADS_LIMIT = [0]


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads in this process's kernels (a batch worker's share),
    whatever ``SALESML_THREADS`` says."""
    _THREADS_LIMIT[0] = max(0, int(threads))


# Each booster's flattened ensemble, built once and dropped with the booster.
_ENSEMBLES: weakref.WeakKeyDictionary[lgb.Booster, TreeEnsemble] = weakref.WeakKeyDictionary()
_ENSEMBLES_LOCK = threading.Lock()


def ensemble_for(booster: lgb.Booster) -> TreeEnsemble:
    """``from_booster(booster)``, built on first use and cached for the booster's lifetime."""
    with _ENSEMBLES_LOCK:
        cached = _ENSEMBLES.get(booster)
    if cached is None:
        cached = from_booster(booster)
        with _ENSEMBLES_LOCK:
            _ENSEMBLES[booster] = cached
    return cached


def _bits(categories: list[int]) -> list[int]:
    words = [0] * (max(categories) // 32 + 1 if categories else 0)
    for c in categories:
        words[c // 32] |= 1 << (c % 32)
    return words


def from_booster(booster: lgb.Booster, table_budget: int = TABLE_BUDGET_BYTES) -> TreeEnsemble:
    """Flatten ``booster`` (all its trees, as ``predict`` uses them) into a ``TreeEnsemble``."""
    dump = booster.dump_model()
    n_trees = booster.num_trees()
    best = int(dump.get("best_iteration", 0) or 0)
    trees = dump["tree_info"][: best if best > 0 else n_trees]
    nodes: dict[str, list[Any]] = {
        k: []
        for k in (
            "feature",
            "threshold",
            "categorical",
            "missing",
            "default_left",
            "cat_offset",
            "cat_words",
            "left",
            "right",
        )
    }
    cat_bits: list[int] = []
    tree_node_offset, tree_leaf_offset = [0], [0]
    leaf_value: list[float] = []
    leaf_paths: list[list[tuple[int, int, int]]] = []  # (node, left, feature)
    leaf_counts: list[float] = []
    expected = 0.0
    for tree in trees:
        root = tree["tree_structure"]
        node_base, leaf_base = len(nodes["feature"]), len(leaf_value)
        if "leaf_value" in root:  # a single-leaf tree: a constant
            expected += float(root["leaf_value"])
            tree_node_offset.append(node_base)
            tree_leaf_offset.append(leaf_base)
            continue
        n_internal = int(tree["num_leaves"]) - 1
        for values in nodes.values():
            values.extend([0] * n_internal)
        leaf_value.extend([0.0] * int(tree["num_leaves"]))
        leaf_paths.extend([[] for _ in range(int(tree["num_leaves"]))])
        leaf_counts.extend([0.0] * int(tree["num_leaves"]))
        root_count = float(root["internal_count"])
        stack: list[tuple[dict[str, Any], list[tuple[int, int, int]]]] = [(root, [])]
        while stack:
            node, path = stack.pop()
            if "leaf_value" in node:
                leaf = leaf_base + int(node.get("leaf_index", 0))
                leaf_value[leaf] = float(node["leaf_value"])
                leaf_counts[leaf] = float(node["leaf_count"])
                leaf_paths[leaf] = path
                expected += float(node["leaf_count"]) / root_count * float(node["leaf_value"])
                continue
            i = node_base + int(node["split_index"])
            feature = int(node["split_feature"])
            nodes["feature"][i] = feature
            nodes["missing"][i] = MISSING_TYPES[str(node["missing_type"])]
            nodes["default_left"][i] = int(bool(node["default_left"]))
            if node["decision_type"] == "==":
                words = _bits([int(c) for c in str(node["threshold"]).split("||")])
                nodes["categorical"][i] = 1
                nodes["cat_offset"][i] = len(cat_bits)
                nodes["cat_words"][i] = len(words)
                nodes["threshold"][i] = 0.0
                cat_bits.extend(words)
            else:
                nodes["threshold"][i] = float(node["threshold"])
            for side in ("left", "right"):
                child = node[f"{side}_child"]
                is_left = int(side == "left")
                nodes[side][i] = (
                    node_base + int(child["split_index"])
                    if "split_index" in child
                    else -(leaf_base + int(child.get("leaf_index", 0))) - 1
                )
                stack.append((child, [*path, (i, is_left, feature)]))
        tree_node_offset.append(len(nodes["feature"]))
        tree_leaf_offset.append(len(leaf_value))
    node_count = _counts(trees)
    return _with_paths(
        booster.num_feature(),
        expected,
        {k: np.asarray(v) for k, v in nodes.items()},
        np.asarray(cat_bits, dtype=np.int64),
        np.asarray(tree_node_offset, dtype=np.int64),
        np.asarray(tree_leaf_offset, dtype=np.int64),
        np.asarray(leaf_value, dtype=np.float64),
        leaf_paths,
        node_count,
        table_budget,
    )


def _counts(trees: list[dict[str, Any]]) -> dict[tuple[int, int], tuple[float, float, float]]:
    """(tree, split index) → (count, left child count, right child count)."""
    out: dict[tuple[int, int], tuple[float, float, float]] = {}
    for t, tree in enumerate(trees):
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_value" in node:
                continue
            left, right = node["left_child"], node["right_child"]

            def count(n: dict[str, Any]) -> float:
                return float(n["leaf_count"] if "leaf_value" in n else n["internal_count"])

            out[(t, int(node["split_index"]))] = (
                float(node["internal_count"]),
                count(left),
                count(right),
            )
            stack += [left, right]
    return out


def _with_paths(
    n_features: int,
    expected: float,
    nodes: dict[str, npt.NDArray[Any]],
    cat_bits: IntArray,
    tree_node_offset: IntArray,
    tree_leaf_offset: IntArray,
    leaf_value: FloatArray,
    leaf_paths: list[list[tuple[int, int, int]]],
    node_count: dict[tuple[int, int], tuple[float, float, float]],
    table_budget: int,
) -> TreeEnsemble:
    node_tree = (
        np.searchsorted(tree_node_offset, np.arange(len(nodes["feature"])), side="right") - 1
    )
    path_offset = [0]
    path_node: list[int] = []
    path_left: list[int] = []
    path_pos: list[int] = []
    unique_offset = [0]
    unique_feature: list[int] = []
    unique_zero: list[float] = []
    for path in leaf_paths:
        features: dict[int, int] = {}
        zeros: list[float] = []
        for node, left, feature in path:
            tree = int(node_tree[node])
            total, n_left, n_right = node_count[(tree, node - int(tree_node_offset[tree]))]
            fraction = (n_left if left else n_right) / total
            if feature not in features:
                features[feature] = len(zeros)
                zeros.append(1.0)
            zeros[features[feature]] *= fraction
            path_node.append(node)
            path_left.append(left)
            path_pos.append(features[feature])
        path_offset.append(len(path_node))
        unique_feature.extend(features)
        unique_zero.extend(zeros)
        unique_offset.append(len(unique_feature))
    # Unique features are numbered in order of first appearance along the path, so a node's
    # number is the same for every leaf below it (the kernel's depth-first walk relies on it).
    node_pos = np.full(len(nodes["feature"]), -1, dtype=np.int64)
    node_pos[np.asarray(path_node, dtype=np.int64)] = np.asarray(path_pos, dtype=np.int64)
    k = np.diff(np.asarray(unique_offset, dtype=np.int64))
    sizes = np.left_shift(1, k) * k
    table_offset = np.full(len(leaf_paths), -1, dtype=np.int64)
    order = np.argsort(k, kind="stable")
    budget, used = table_budget // 8, 0
    for leaf in order:
        if used + sizes[leaf] > budget or k[leaf] > 30:
            break
        table_offset[leaf] = used
        used += int(sizes[leaf])
    table = np.zeros(used, dtype=np.float64)
    zero = np.asarray(unique_zero, dtype=np.float64)
    _kernels.fill_tables(
        np.asarray(unique_offset, dtype=np.int64), zero, leaf_value, table_offset, table
    )
    return TreeEnsemble(
        n_features=n_features,
        expected_value=expected,
        node_feature=nodes["feature"].astype(np.int64),
        node_threshold=nodes["threshold"].astype(np.float64),
        node_categorical=nodes["categorical"].astype(np.int64),
        node_missing=nodes["missing"].astype(np.int64),
        node_default_left=nodes["default_left"].astype(np.int64),
        node_cat_offset=nodes["cat_offset"].astype(np.int64),
        node_cat_words=nodes["cat_words"].astype(np.int64),
        cat_bits=cat_bits,
        node_left=nodes["left"].astype(np.int64),
        node_right=nodes["right"].astype(np.int64),
        node_pos=node_pos,
        tree_node_offset=tree_node_offset,
        tree_leaf_offset=tree_leaf_offset,
        leaf_value=leaf_value,
        leaf_path_offset=np.asarray(path_offset, dtype=np.int64),
        path_node=np.asarray(path_node, dtype=np.int64),
        path_left=np.asarray(path_left, dtype=np.int64),
        path_pos=np.asarray(path_pos, dtype=np.int64),
        leaf_unique_offset=np.asarray(unique_offset, dtype=np.int64),
        unique_feature=np.asarray(unique_feature, dtype=np.int64),
        unique_zero=zero,
        leaf_table_offset=table_offset,
        table=table,
    )


def shap_values(ensemble: TreeEnsemble, x: FloatArray) -> FloatArray:
    """``(n, n_features + 1)`` log-odds contributions; the last column is the expected value.

    ``x`` is the model matrix as LightGBM sees it: float64, categoricals as their codes with
    NaN for missing (``WinBundle.model_matrix``).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != ensemble.n_features:
        raise ValueError(f"expected {ensemble.n_features} feature columns, got shape {x.shape}")
    threads = _THREADS_LIMIT[0] or Settings().threads
    if threads > 0:
        _kernels.set_threads(threads)
    out = np.zeros((x.shape[0], ensemble.n_features + 1), dtype=np.float64)
    e = ensemble
    _kernels.shap_rows(
        x,
        e.node_feature,
        e.node_threshold,
        e.node_categorical,
        e.node_missing,
        e.node_default_left,
        e.node_cat_offset,
        e.node_cat_words,
        e.cat_bits,
        e.node_left,
        e.node_right,
        e.node_pos,
        e.tree_node_offset,
        e.leaf_value,
        e.leaf_unique_offset,
        e.unique_feature,
        e.unique_zero,
        e.leaf_table_offset,
        e.table,
        out,
    )
    out[:, -1] = e.expected_value
    return out
