"""The broker: the bus's XSUB/XPUB proxy, with its own heartbeat
(``python -m broker``); ``python -m broker.monitor`` watches the cluster."""
