"""Connected components (large-star / small-star rounds, and the one-task path for few edges) against a union-find
reference, on handcrafted and random graphs.

Spark jobs are the slow part here, so every graph goes into one edge list (disjoint node ranges) and one run.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from spark_jobs.dedup.components import NotConverged, connected_components, smallest_roots


def union_find_roots(edges: list[tuple[int, int]]) -> dict[int, int]:
    """node -> smallest node of its component, for every node that is not the smallest (the reference)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent) if find(x) != x}


def path(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def shuffled_path(n: int, rng: random.Random) -> list[tuple[int, int]]:
    """A path whose node order is random: the worst case for label propagation, a good one for star rounds."""
    order = list(range(n))
    rng.shuffle(order)
    return [(order[i], order[i + 1]) for i in range(n - 1)]


def star(n: int, centre: int) -> list[tuple[int, int]]:
    return [(centre, i) for i in range(n) if i != centre]


def cycle(n: int) -> list[tuple[int, int]]:
    return path(n) + [(n - 1, 0)]


def two_components() -> list[tuple[int, int]]:
    return [(5, 1), (1, 3), (8, 6), (6, 9), (9, 7)]


def random_graph(n: int, m: int, rng: random.Random) -> list[tuple[int, int]]:
    return [(rng.randrange(n), rng.randrange(n)) for _ in range(m)]


def offset(edges: list[tuple[int, int]], by: int) -> list[tuple[int, int]]:
    return [(a + by, b + by) for a, b in edges]


def lazy_cut(df):
    return df.localCheckpoint(eager=False)


def run(spark, edges, max_iterations=30, local_edges=0):
    df = spark.createDataFrame(edges, "src long, dst long").repartition(3)
    result = connected_components(df, lazy_cut, max_iterations, local_edges)
    assignments = {r["node"]: r["root"] for r in result.assignments.collect()}
    assert result.size == len(assignments)
    return assignments, result.rounds, result.method


def test_union_find_reference_itself():
    assert union_find_roots(two_components()) == {5: 1, 3: 1, 8: 6, 9: 6, 7: 6}
    assert union_find_roots(path(4)) == {1: 0, 2: 0, 3: 0}


@pytest.mark.parametrize(("local_edges", "method"), [(0, "star_rounds"), (10_000, "one_task")])
def test_components_match_union_find_on_many_graphs(spark, local_edges, method):
    rng = random.Random(7)
    graphs = [
        path(12),
        shuffled_path(16, rng),
        star(20, centre=13),  # centre is not the minimum: every leaf must move to node 0
        cycle(10),
        two_components(),
        [(3, 3), (3, 4)],  # a self loop is not an edge to anyone
        *[random_graph(30, rng.randrange(10, 50), rng) for _ in range(12)],
    ]
    edges = [e for i, g in enumerate(graphs) for e in offset(g, 1000 * i)]
    got, rounds, used = run(spark, edges, local_edges=local_edges)
    assert got == union_find_roots(edges)
    assert used == method
    assert rounds <= 30 if method == "star_rounds" else rounds == 0


def test_more_edges_than_the_one_task_limit_take_star_rounds(spark):
    edges = shuffled_path(40, random.Random(3))
    got, rounds, used = run(spark, edges, local_edges=len(edges) - 1)
    assert (got, used) == (union_find_roots(edges), "star_rounds") and rounds > 0


def test_stars_around_their_minimum_need_no_round(spark):
    """Dedup's verified star edges are often already the answer: the convergence check runs before any round."""
    edges = [(7, 3), (5, 3), (4, 3), (9, 8)]
    assert run(spark, edges, local_edges=100) == ({7: 3, 5: 3, 4: 3, 9: 8}, 0, "stars")


@pytest.mark.parametrize("local_edges", [0, 100])
def test_string_node_ids_use_spark_ordering(spark, local_edges):
    edges = [("b", "c"), ("c", "a"), ("x", "y"), ("é", "z"), ("z", "\U0001f600"), ("\U0001f600", "\uffff")]
    df = spark.createDataFrame(edges, "src string, dst string")
    result = connected_components(df, lazy_cut, 10, local_edges)
    expected = {"b": "a", "c": "a", "y": "x", "é": "z", "\U0001f600": "z", "\uffff": "z"}
    assert {r["node"]: r["root"] for r in result.assignments.collect()} == expected


def test_smallest_roots_of_an_arrow_edge_list():
    src, dst = pa.array([9, -4, 2**62, 7], pa.int64()), pa.array([-4, 3, 7, 7], pa.int64())
    nodes, roots = smallest_roots(src, dst)
    assert dict(zip(nodes.to_pylist(), roots.to_pylist(), strict=True)) == {9: -4, 3: -4, 2**62: 7}
    assert nodes.type == roots.type == pa.int64()


def test_iteration_bound_raises_instead_of_returning_partial_components(spark):
    with pytest.raises(NotConverged, match="did not converge in 1"):
        run(spark, shuffled_path(64, random.Random(1)), max_iterations=1)
