"""Benchmark tools and the baselines the client benchmark measures against
(``python -m bench.failover``, ``bench.bare_route``, ``bench.zmq_echo``)."""
