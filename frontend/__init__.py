"""The frontend node: the seed's HTTP API in front of the ZeroMQ backends.

:mod:`frontend.app` builds the Flask application (``create_app``),
:mod:`frontend.routes` holds the endpoints, :mod:`frontend.backend` and
:mod:`frontend.channel` the way to the catalog and the order replicas,
:mod:`frontend.cache` and :mod:`frontend.leader` the pure cache and leader
tracker, :mod:`frontend.watch` the bus listener. Importing this package
loads none of them, so ``frontend.cache`` can be used without Flask, ZeroMQ
or gevent.
"""
