"""Bazaar's HTTP client: ``python -m client session`` (the seed's trading
session, with the verification of every acknowledged trade) and
``python -m client bench`` (the HTTP benchmark; docs/PERFORMANCE.md).

Modules: :mod:`client.http` (the keep-alive ``http.client`` wrapper),
:mod:`client.session`, :mod:`client.stats` (recording and percentiles),
:mod:`client.bench` with :mod:`client.workers`, :mod:`client.servers`,
:mod:`client.noise`, :mod:`client.report` and :mod:`client.plots`.
"""
