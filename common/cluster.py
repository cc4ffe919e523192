"""``python -m common.cluster``: what run.sh asks about the cluster.

* ``nodes``: one line per node of config.toml, ``name<TAB>python arguments``,
  in start order (run.sh starts exactly these).
* ``wait``: wait until the frontend answers and knows an order leader, then
  print where the API listens (exit 1 after ``--timeout`` seconds).
* ``status``: the frontend's view of the cluster (leader, last heartbeats).

Uses only the standard library besides the config loader, so it works before
anything else is known to be healthy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from . import config as configuration


def node_commands(config: configuration.Config) -> list[tuple[str, list[str]]]:
    """Every node and the arguments after ``python`` that start it."""
    base = ["--config", str(config.path)]
    nodes = [("broker", ["-m", "broker", *base]), ("catalog", ["-m", "catalog", *base])]
    nodes += [(r.name, ["-m", "order", *base, "--id", str(r.id)]) for r in config.orders]
    nodes.append(("frontend", ["-m", "frontend", *base]))
    return nodes


def api_url(config: configuration.Config) -> str:
    host = config.frontend.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{config.frontend.port}"


def fetch_stats(config: configuration.Config, timeout_s: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(api_url(config) + "/stats", timeout=timeout_s) as reply:
            return json.load(reply)["data"]
    except (OSError, ValueError, KeyError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m common.cluster")
    parser.add_argument("command", choices=("nodes", "wait", "status", "url"))
    parser.add_argument("--config", default="config.toml")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    config = configuration.load(args.config)
    if args.command == "nodes":
        for name, argv in node_commands(config):
            print(name + "\t" + " ".join(argv))
    elif args.command == "url":
        print(api_url(config))
    elif args.command == "wait":
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            stats = fetch_stats(config)
            if stats and stats["leader"]["leader"] is not None:
                leader = stats["leader"]
                print(f"Bazaar is up: {api_url(config)}  (order leader: replica {leader['leader']}, "
                      f"epoch {leader['epoch']})")
                return
            time.sleep(0.1)
        print(f"the cluster did not come up within {args.timeout:g}s; see the logs", file=sys.stderr)
        sys.exit(1)
    else:
        stats = fetch_stats(config)
        if stats is None:
            print(f"frontend at {api_url(config)}: not answering")
            sys.exit(1)
        leader = stats["leader"]
        print(f"frontend at {api_url(config)}: order leader {leader['leader']} (epoch {leader['epoch']})")
        for node, age in sorted(stats["heard"].items()):
            state = "alive" if age <= config.heartbeat.window_s else "silent"
            print(f"  {node:<12} {state:<7} last heartbeat {age * 1000:8.0f} ms ago")


if __name__ == "__main__":
    main()
