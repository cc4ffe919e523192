"""Whole Bazaar clusters of real processes, and the tools that judge them.

Shipped with the nodes (as nameko ships ``nameko.testing``) because the
tests, the client benchmark (``python -m client bench --spawn``) and the
failover benchmark (``python -m bench.failover``) all use them:

* :mod:`harness.process`: a child process in its own process group, and
  :func:`~harness.process.wait_until`, the one way to wait for a condition;
* :mod:`harness.cluster`: a cluster on free loopback ports (on 127.0.0.1, or
  each node on a loopback address of its own), its nodes' handles, a small
  HTTP client, the databases read directly;
* :mod:`harness.links`: TCP proxies between nodes that can be cut, held or delayed;
* :mod:`harness.bus`: a tap on the cluster's bus;
* :mod:`harness.history`: trading clients that record every operation;
* :mod:`harness.checker`: the promises judged on a history and a final state.
"""
