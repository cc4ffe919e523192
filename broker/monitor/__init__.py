"""The zmq monitor tool: ``python -m broker.monitor --config config.toml``.

It subscribes to the whole bus (one SUB socket on the broker's XPUB), watches
that socket with ZeroMQ's socket monitor, and shows every node's health, the
order leader and its epoch, each replica's and the catalog's lag, trade,
lookup and invalidation rates, and an event feed; ``--json`` writes the same
as one JSON object per line. Modules:

* :mod:`.state`: the pure picture of the cluster, and the events the monitor
  derives (node dead or back, leader changed, caught up...);
* :mod:`.rates`, :mod:`.feed`: counters to per-second rates; the event feed;
* :mod:`.listener`: the I/O loop that owns the sockets;
* :mod:`.jsonlines`, :mod:`.view`, :mod:`.exporter`: the three outputs (JSON
  lines, the rich live view, metrics for Prometheus).

docs/MONITOR.md is the user's guide.
"""

from .state import Derived, Kind, MonitorState, Snapshot

__all__ = ["Derived", "Kind", "MonitorState", "Snapshot"]
