"""Connected components of a large graph on Spark DataFrames: alternating large-star / small-star.

Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii, "Connected Components in MapReduce and Beyond" (SoCC 2014).
Each round is two window aggregations and a distinct over the edge list, plus one aggregation to test convergence,
so it scales with the cluster: nothing is collected, and no node's neighbourhood has to fit in one machine's memory
(neighbourhood minima are window aggregates over the node's edges, which Spark spills to disk for a large hub).

* large-star(u): connect every *larger* neighbour v of u to m(u), the smallest node of u's closed neighbourhood;
* small-star(u): connect u and every *smaller* neighbour v of u to m(u), the smallest of those.

Both preserve connectivity, and their common fixed point is a star forest: every component a star around its
smallest node, which is the answer. So instead of running a round to see that nothing changes, the loop checks the
star-forest property directly (one aggregation per round: no node both points somewhere and is pointed at, none
points twice), which is exact and saves the confirming round; dedup's star edges often pass before any round. It
raises after ``max_iterations`` rounds rather than return a partial answer. The rounds needed grow like O(log^2 n)
in theory and are a handful in practice; the lineage would grow with them, so each round's edges are checkpointed
(``cut``), materialised by that round's check: one Spark job per round.

Near-dedup usually verifies few edges (a few per removed document), and then the rounds are mostly scheduling:
each is a few short jobs. Up to ``local_edges`` edges, like a broadcast join's size limit, the edges are instead
moved into one task, whose Python worker finds the components in one pass over them (SciPy's union of the sparse
graph, C speed) and returns the same node -> smallest node rows. The bound keeps that task's memory bounded
(16 bytes per edge for long ids) whatever the input size; a larger graph takes the distributed rounds.

Node ids may be any type Spark orders (long or string doc ids); "smallest" is Spark's ordering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as sparse_components

from spark_jobs.documents import arrow_schema

Cut = Callable[[DataFrame], DataFrame]
"""Mark a frame to be materialised (and its lineage dropped) by the next action on it: a lazy ``localCheckpoint``
or ``checkpoint``. Callers run one full aggregation right after, so computing and checkpointing share a job."""


class NotConverged(RuntimeError):
    """The round limit was hit before the edges formed stars; the components would be wrong."""


def _min_over_node(column: str) -> Column:
    """The minimum of ``column`` over all edges of the row's node ``u`` (a window: one shuffle, spills for hubs)."""
    return F.min(column).over(Window.partitionBy("u"))


def large_star(edges: DataFrame) -> DataFrame:
    """Every node's larger neighbours re-attached to the minimum of its closed neighbourhood (``src`` > ``dst``).

    Not deduplicated: :func:`small_star` reads it next and deduplicates its own output, which saves a shuffle.
    """
    both = edges.select(F.col("src").alias("u"), F.col("dst").alias("v")).union(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("v"))
    )
    m = F.least(F.col("u"), _min_over_node("v"))
    return (
        both.withColumn("m", m).where(F.col("v") > F.col("u")).select(F.col("v").alias("src"), F.col("m").alias("dst"))
    )


def small_star(edges: DataFrame) -> DataFrame:
    """Every node and its smaller neighbours attached to the smallest of them (``src`` > ``dst``, distinct)."""
    down = edges.select(F.greatest("src", "dst").alias("u"), F.least("src", "dst").alias("v")).where(
        F.col("u") != F.col("v")
    )
    m = F.col("m")
    spokes = F.array(
        F.struct(F.col("v").alias("src"), m.alias("dst")), F.struct(F.col("u").alias("src"), m.alias("dst"))
    )
    attached = down.withColumn("m", _min_over_node("v")).select(F.explode(spokes).alias("e")).select("e.*")
    return attached.where(F.col("src") != F.col("dst")).distinct()


def star_forest_check(edges: DataFrame) -> tuple[bool, int]:
    """Whether every node is either a leaf with exactly one edge, to a smaller centre, or a centre with no edge of its
    own (the common fixed point of both operations, i.e. the answer), and the number of edges.

    One aggregation job, which also materialises ``edges`` when it is a fresh cut.
    """
    roles = edges.select(F.col("src").alias("node"), F.lit(1).alias("out"), F.lit(0).alias("in")).union(
        edges.select(F.col("dst").alias("node"), F.lit(0).alias("out"), F.lit(1).alias("in"))
    )
    per_node = roles.groupBy("node").agg(F.sum("out").alias("out"), F.sum("in").alias("in"))
    broken = (F.col("out") > 1) | ((F.col("out") > 0) & (F.col("in") > 0))
    row = per_node.agg(F.count(F.when(broken, 1)).alias("broken"), F.sum("out").alias("edges")).first()
    return row["broken"] == 0, int(row["edges"] or 0)


class Components(NamedTuple):
    """The result of :func:`connected_components`."""

    assignments: DataFrame
    """Columns ``node`` and ``root`` (``node`` > ``root``): one row per node that is not the smallest of its
    component (the smallest nodes are exactly the roots, absent as nodes)."""
    size: int
    """Number of rows of ``assignments``."""
    rounds: int
    """Large-star + small-star rounds run (0 when the input already was stars around their minima, or when the
    components were found in one task)."""
    method: str
    """``stars`` (the input already was the answer), ``one_task`` or ``star_rounds``."""


def smallest_roots(src: pa.Array, dst: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(node, root) for every node of the edges ``src``-``dst`` that is not the smallest of its component.

    Nodes are numbered in sorted order (``pandas.factorize(sort=True)``), so the smallest number of a component is
    its smallest node. Python orders strings by code point, which is the byte order of their UTF-8, Spark's order.
    """
    ends = np.concatenate([src.to_numpy(zero_copy_only=False), dst.to_numpy(zero_copy_only=False)])
    codes, nodes = pd.factorize(ends, sort=True)
    n, edges = len(nodes), len(src)
    graph = coo_matrix((np.ones(edges, dtype=np.int8), (codes[:edges], codes[edges:])), shape=(n, n))
    _, labels = sparse_components(graph, directed=False)
    smallest = np.full(labels.max(initial=-1) + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    roots = smallest[labels]
    moved = np.flatnonzero(roots != np.arange(n))
    return pa.array(nodes[moved], type=src.type), pa.array(nodes[roots[moved]], type=src.type)


def one_task_components(edges: DataFrame) -> DataFrame:
    """The ``node``, ``root`` rows of :class:`Components`, found by one task that reads all ``edges`` (few)."""
    schema = edges.select(F.col("src").alias("node"), F.col("dst").alias("root")).schema
    edge_schema, target = arrow_schema(edges.schema), arrow_schema(schema)

    def find(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(list(batches), schema=edge_schema).combine_chunks()
        src, dst = (table.column(name).combine_chunks() for name in ("src", "dst"))
        yield pa.RecordBatch.from_arrays(list(smallest_roots(src, dst)), schema=target)

    return edges.coalesce(1).mapInArrow(find, schema)


def connected_components(edges: DataFrame, cut: Cut, max_iterations: int, local_edges: int = 0) -> Components:
    """Map every non-minimal node of ``edges`` (columns ``src``, ``dst``) to its component's smallest node.

    Graphs of at most ``local_edges`` distinct edges are solved in one task; larger ones by star rounds, which
    raise :class:`NotConverged` after ``max_iterations`` rounds.
    """
    oriented = edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
    current = cut(oriented.where(F.col("src") != F.col("dst")).distinct())
    rounds = 0
    done, size = star_forest_check(current)
    if not done and size <= local_edges:
        assignments = cut(one_task_components(current))
        return Components(assignments, assignments.count(), 0, "one_task")
    while not done:
        if rounds == max_iterations:
            raise NotConverged(
                f"connected components did not converge in {max_iterations} large-star/small-star rounds; "
                "raise --dedup-max-iterations (a very long chain of near-duplicates needs more rounds)"
            )
        current = cut(small_star(large_star(current)))
        rounds += 1
        done, size = star_forest_check(current)
    method = "star_rounds" if rounds else "stars"
    return Components(current.select(F.col("src").alias("node"), F.col("dst").alias("root")), size, rounds, method)
