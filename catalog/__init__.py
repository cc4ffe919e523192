"""The catalog node: the stock table, trades applied in durable batches,
and every change published on the bus (``python -m catalog``)."""
