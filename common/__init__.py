"""What every Bazaar node shares: configuration, the wire protocol and its
codec, the stock book, request/reply and bus helpers, heartbeats, socket
construction, CurveZMQ keys and the ZAP handler, storage, trade tracing, logs
and the error tree.

The protocol necessarily names stocks, orders and leaders (every message is
defined here once, with the limits every node checks). The one rule shared
here is :mod:`common.book`: what an entry of the order log does to the
stocks, the pure fold that the order replicas, the catalog and the history
checker all run, so that they cannot disagree. No node's own logic lives
here: no election, no trading desk, no catalog feed, no cache policy."""
