"""What every Bazaar node shares: configuration, the wire protocol and its
codec, request/reply and bus helpers, heartbeats, logs and the error tree.
Nothing here knows about stocks, orders or leaders."""
