"""What every Bazaar node shares: configuration, the wire protocol and its
codec, request/reply and bus helpers, heartbeats, socket construction,
CurveZMQ keys and the ZAP handler, trade tracing, logs and the error tree.

The protocol necessarily names stocks, orders and leaders (every message is
defined here once, with the limits every node checks); no node's logic lives
here: no election, no trading rule, no cache policy."""
