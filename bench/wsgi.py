"""The frontend's HTTP server against gunicorn's gevent worker: what a request costs in each.

    .venv/bin/python -m bench.wsgi [--clients 5] [-n 2000] [--rounds 3]

Both servers answer the bare route (:func:`bench.bare_route.create_bare_app`,
the Flask app a cached lookup is measured against): one is the frontend's
own server (:class:`frontend.server.FrontendServer`: gevent.pywsgi, one
process, ``TCP_NODELAY``), the other gunicorn with one gevent worker, as the
frontend ran until this measurement chose pywsgi (docs/PERFORMANCE.md).
``--clients`` processes each keep one ``http.client`` connection and send
``-n`` requests back to back. Rounds alternate the order (A B, B A) so a
drift of the machine's load favours neither. Printed per round: p50,
requests/s and the server's CPU time per request (its whole process group),
and the cores the rest of the machine used meanwhile (other tenants; the
clients are not counted there), and the ratios pywsgi / gunicorn within each
round.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from client import noise
from client.servers import Servers, http_ready
from common import config as configuration
from common.sockets import free_tcp_ports

REPO = Path(__file__).resolve().parents[1]
PATH = "/stocks/GameStart"


def serve_gunicorn(port: int) -> None:
    """The bare route on gunicorn, one gevent worker (the frontend's settings until pywsgi)."""
    from gunicorn.app.base import BaseApplication

    from bench.bare_route import create_bare_app

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": [f"127.0.0.1:{port}"], "workers": 1, "worker_class": "gevent",
                               "worker_connections": 1000, "keepalive": 75, "accesslog": None,
                               "errorlog": "-", "loglevel": "warning", "control_socket_disable": True}.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return create_bare_app()

    Gunicorn().run()


def _client(port: int, n: int, start: float, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(10):  # warm-up: the connection, the server's caches
        conn.request("GET", PATH)
        conn.getresponse().read()
    time.sleep(max(0.0, start - time.time()))
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", PATH)
        conn.getresponse().read()
        latencies.append(time.perf_counter() - t0)
    conn.close()
    out.put(latencies)


def phase(name: str, port: int, pgid: int, clients: int, n: int) -> dict[str, float]:
    """``clients`` closed loops against one server; its figures."""
    out: mp.Queue = mp.Queue()
    start = time.time() + 0.5
    workers = [mp.Process(target=_client, args=(port, n, start, out)) for _ in range(clients)]
    for w in workers:
        w.start()
    parties = {name: (set(), {pgid}), "clients": ({os.getpid(), *(w.pid for w in workers)}, set())}
    time.sleep(max(0.0, start - time.time()))
    before = noise.sample(parties)
    latencies = sorted(sum((out.get(timeout=120) for _ in workers), []))
    after = noise.sample(parties)
    for w in workers:
        w.join(timeout=10)
    wall = after["t"] - before["t"]
    cores = noise.between(before, after)
    server_cores = cores["parties"].get(name, 0.0)
    return {"p50_ms": statistics.median(latencies) * 1e3, "rps": len(latencies) / wall,
            "cpu_us": server_cores * wall / len(latencies) * 1e6, "other": cores["other_cores"] or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wsgi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5, help="client processes (default 5)")
    parser.add_argument("-n", type=int, default=2000, help="requests per client and phase (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both servers (default 3)")
    parser.add_argument("--serve-gunicorn", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_gunicorn:
        serve_gunicorn(args.serve_gunicorn)
        return
    with tempfile.TemporaryDirectory(prefix="bazaar-wsgi-") as tmp:
        servers = Servers(Path(tmp), say=print)
        try:
            config = REPO / "config.toml"
            configuration.load(config)  # fail early, with the config's own message
            pywsgi, p_port = servers.bare_route(config)
            (g_port,) = free_tcp_ports(1)
            gunicorn = servers.start("gunicorn", ["-m", "bench.wsgi", "--serve-gunicorn", str(g_port)],
                                     http_ready(g_port, PATH), "answer on /stocks")
            targets = {"gunicorn gevent": (g_port, gunicorn.pid), "gevent.pywsgi": (p_port, pywsgi.pid)}
            print(f"\n{args.clients} clients x {args.n} requests per phase\n")
            print("| round | server | p50 ms | req/s | server CPU us/req | other cores |")
            print("|---|---|---:|---:|---:|---:|")
            ratios = []
            for r in range(1, args.rounds + 1):
                order = list(targets) if r % 2 else list(reversed(targets))
                got = {}
                for name in order:
                    port, pgid = targets[name]
                    got[name] = phase(name, port, pgid, args.clients, args.n)
                    g = got[name]
                    print(f"| {r} | {name} | {g['p50_ms']:.3f} | {g['rps']:.0f} | {g['cpu_us']:.0f} | "
                          f"{g['other']:.2f} |", flush=True)
                a, b = got["gevent.pywsgi"], got["gunicorn gevent"]
                ratios.append((a["cpu_us"] / b["cpu_us"] if a["cpu_us"] and b["cpu_us"] else None,
                               a["rps"] / b["rps"], a["p50_ms"] / b["p50_ms"]))
            print("\npywsgi / gunicorn, median over rounds (min..max):")
            for i, label in enumerate(("server CPU per request", "requests/s", "p50")):
                values = [x[i] for x in ratios if x[i] is not None]
                if not values:  # /proc counts CPU time in 10 ms ticks: a phase that short reads 0
                    print(f"  {label}: n/a (phases too short to measure CPU time; use more requests)")
                    continue
                print(f"  {label}: {statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})")
        finally:
            servers.close()


if __name__ == "__main__":
    sys.exit(main())
