"""Randomized chaos under load, checked by the history checker.

The CI run is short (one seed, about 20 s of faults); ``pytest -m soak``
plays long schedules over several seeds. ``BAZAAR_CHAOS_SEED`` and
``BAZAAR_CHAOS_SECONDS`` choose the seed and length (to replay a failure).
"""

from __future__ import annotations

import os

import pytest

from .chaos import run_chaos

FAST = {"timeouts": {"request_ms": 500, "lookup_attempts": 2, "trade_deadline_ms": 2000}}


@pytest.mark.slow
def test_chaos_keeps_every_promise(cluster_factory):
    seed = int(os.environ.get("BAZAAR_CHAOS_SEED", "1"))
    seconds = float(os.environ.get("BAZAAR_CHAOS_SECONDS", "20"))
    cluster = cluster_factory(links=True, frontends=2, settings=FAST)
    figures = run_chaos(cluster, seed, seconds)
    assert figures["faults"] >= 5 and figures["acknowledged"] > 0


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(100, 105))
def test_long_chaos_keeps_every_promise(cluster_factory, seed):
    seconds = float(os.environ.get("BAZAAR_CHAOS_SECONDS", "180"))
    cluster = cluster_factory(links=True, frontends=2, settings=FAST)
    run_chaos(cluster, seed, seconds)
