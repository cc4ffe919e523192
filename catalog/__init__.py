"""The catalog node: the stock table as a projection of the order log,
fetched from the order replicas, applied by index, and every change
published on the bus (``python -m catalog``)."""
