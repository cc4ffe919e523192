"""Benchmark tools and the baselines the client benchmark measures against.

``python -m bench.trace`` (a trade's latency budget, stage by stage),
``bench.codec`` (the codec against bare msgpack), ``bench.wsgi`` (the
frontend's HTTP server against gevent.pywsgi), ``bench.failover`` (leader
kills and hangs under load), ``bench.catchup`` (a wiped replica's rejoin);
``bench.bare_route`` and ``bench.zmq_echo`` are the baselines
``python -m client bench`` starts. docs/PERFORMANCE.md gives their figures.
"""
