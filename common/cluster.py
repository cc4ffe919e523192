"""``python -m common.cluster``: what run.sh asks about the cluster.

* ``nodes``: one line per node of config.toml, ``name<TAB>python arguments``,
  in start order (run.sh starts exactly these).
* ``wait``: wait until the frontend answers and knows an order leader, then
  print where the API listens (exit 1 after ``--timeout`` seconds).
* ``status``: the frontend's view of the cluster (leader, last heartbeats).
* ``keys``: make the CURVE key pairs that are missing under ``[security]
  keys_dir`` (:func:`common.security.generate`); ``--force`` makes them all
  anew; ``--if-none`` only when the directory holds no key at all (what
  run.sh does before a start, so a fresh checkout just works while a host
  that was given its keys never gets others made behind its back).

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
from . import security


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


def make_keys(config: configuration.Config, force: bool = False, if_none: bool = False) -> None:
    """``keys``: make the missing key pairs and say what was made, and where."""
    keys_dir = config.security.keys_dir
    if if_none and (not config.security.curve or security.has_keys(keys_dir)):
        return
    made = security.generate(keys_dir, security.key_names(config), force=force)
    if made:
        print(f"made CURVE key pairs for {', '.join(made)} in {keys_dir}")
        print(f"  public keys: {keys_dir / security.PUBLIC_DIR} (every host gets them all)")
        print(f"  secret keys: {keys_dir / security.SECRET_DIR} (mode 600; each host only its own node's)")
    else:
        print(f"no key pair missing in {keys_dir} (./run.sh keys --force makes them all anew)")
    elsewhere = [name for name in security.key_names(config)
                 if not security.secret_path(keys_dir, name).exists()]
    if elsewhere:
        print(f"  public key only (their secret keys are on other hosts): {', '.join(elsewhere)}")
    if not config.security.curve:
        print("note: [security] curve = false in the config: the nodes do not use them")


def data_files(config: configuration.Config, node: str) -> list:
    """A node's database, its WAL and shared-memory files, and its marker."""
    base = config.data_dir / f"{node}.sqlite3"
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm"),
            config.data_dir / f"{node}.id"]


def reset(config: configuration.Config, node: str | None) -> int:
    """Wipe a stopped node's data on purpose, so that it starts empty.

    An order replica then starts *blank*: it neither votes nor counts toward a
    majority until it has copied the history from the leader. The catalog
    rebuilds its table from the order log, losing nothing. ``all`` wipes every
    node: a new cluster, whose first leader writes the CSV's stocks again.
    """
    replicas = {r.name for r in config.orders}
    names = sorted(replicas) + ["catalog"] if node == "all" else [node]
    if node != "all" and node not in replicas | {"catalog"}:
        print(f"reset what? one of {', '.join(sorted(replicas))}, catalog or all (the broker and frontends keep "
              f"no data)", file=sys.stderr)
        return 2
    for name in names:
        removed = [path for path in data_files(config, name) if path.exists()]
        for path in removed:
            path.unlink()
        if removed:
            print(f"reset {name}: removed {', '.join(str(p) for p in removed)}")
        else:
            print(f"reset {name}: it had no data in {config.data_dir}")
    if node == "all":
        print("every node starts empty: a new cluster, whose first order leader writes the initial stocks "
              f"of {config.stocks_csv} into its log")
    elif node in replicas:
        print(f"{node} starts empty: it copies the history from the leader before it votes again")
    else:
        print("the catalog starts empty and rebuilds its table from the order log (it shows its progress in its "
              "log and its lag in the monitor); lookups are answered by the order replicas meanwhile")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m common.cluster")
    parser.add_argument("command", choices=("nodes", "wait", "status", "url", "keys", "reset"))
    parser.add_argument("node", nargs="?", help="reset: the node whose data to wipe")
    parser.add_argument("--config", default="config.toml")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--force", action="store_true", help="keys: make every key pair anew")
    parser.add_argument("--if-none", action="store_true", help="keys: only if the directory holds no key")
    args = parser.parse_args()
    config = configuration.load(args.config)
    if args.command == "keys":
        make_keys(config, args.force, args.if_none)
    elif args.command == "reset":
        sys.exit(reset(config, args.node))
    elif args.command == "nodes":
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
