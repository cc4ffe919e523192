"""Fixtures shared by every test layer.

``cluster_factory`` starts whole clusters of real processes on free loopback
ports and SIGKILLs every one of them when the test ends, pass or fail.
"""

from __future__ import annotations

import pytest

from harness.cluster import Cluster


@pytest.fixture
def cluster_factory(tmp_path):
    made: list[Cluster] = []

    def make(start: bool = True, **kwargs) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", **kwargs)
        made.append(cluster)
        return cluster.start() if start else cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """One cluster for a whole module of tests that do not break it."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.close()
