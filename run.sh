#!/usr/bin/env bash
# Bazaar's front door. Run ./run.sh help for the commands.
#
# Every node runs in its own process group (so a signal reaches whatever it
# started too), with its pid file and log under run/current/, a link
# to this start's directory run/<timestamp>/.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CONFIG="${BAZAAR_CONFIG:-$ROOT/config.toml}"
RUNS="$ROOT/run"
CURRENT="$RUNS/current"

usage() {
  cat <<'EOF'
usage: ./run.sh [command] [node]

  (none) | up      start every node, wait, stop them all on Ctrl-C or SIGTERM
  start [node]     start every node (or one) in the background
  stop [node]      stop every node (or one) politely (SIGTERM)
  kill <node>      kill one node with SIGKILL (a crash, for experiments)
  status           which nodes run, and the cluster as the frontend sees it
  logs [node]      follow the logs (of one node)
  monitor          the live cluster view (python -m broker.monitor)
  reset <node>     wipe a node's data on purpose, stopping it first if it runs: an order
                   replica then copies the history back from the leader before it votes, the
                   catalog rebuilds its table from the order log (nothing is lost either way)
  reset all        stop every node and wipe all their data: a new, empty cluster
  keys [--force]   make the CURVE key pairs config.toml's [security] keys_dir lacks
                   (--force: all of them anew); up and start make them if there are none
  backup DIR [--replica N]
                   copy the order log into DIR (new or empty) while the cluster runs, from the
                   most up-to-date replica on this host (or replica N), with a manifest
  restore DIR [--force]
                   with every node stopped: give every replica the log backed up in DIR; the
                   catalog rebuilds from it. Refuses, changing nothing, if the backup is damaged
                   or another cluster's, a node runs, or the data dir is not empty (--force
                   replaces the nodes' files there). Trades after the backup are lost
  test [args]      install test dependencies and run the test suite (pytest args allowed)
  install          create .venv and install Bazaar into it

Nodes: broker, catalog, order-1, order-2, order-3, frontend (as config.toml names them).
Set BAZAAR_CONFIG to use another config file.
EOF
}

install() {
  local extras="${1:-}"
  if [ ! -x "$PY" ]; then
    echo "creating virtual environment in .venv"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.bazaar-installed$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing Bazaar${extras:+ with $extras} into .venv (first run takes a minute)"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".$extras"
    touch "$stamp"
  fi
}

NODES=""
# Call once in the main shell (not in $(...)), after install: the node list.
load_nodes() { NODES=$("$PY" -m common.cluster nodes --config "$CONFIG"); }
node_lines() { echo "$NODES"; }

node_args() {
  local wanted="$1" name args
  while IFS=$'\t' read -r name args; do
    if [ "$name" = "$wanted" ]; then echo "$args"; return 0; fi
  done <<<"$(node_lines)"
  echo "unknown node '$wanted'; nodes are: $(node_lines | cut -f1 | tr '\n' ' ')" >&2
  return 1
}

# True if the process runs (a zombie, dead but not yet reaped, does not count).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    [ "$(cut -d')' -f2 "/proc/$1/stat" | cut -d' ' -f2)" != "Z" ] || return 1
  fi
}

pid_of() {
  local file="$CURRENT/$1.pid"
  [ -f "$file" ] || return 1
  local pid
  pid=$(cat "$file")
  alive "$pid" || return 1
  echo "$pid"
}

new_run_dir() {
  mkdir -p "$RUNS"
  local dir="$RUNS/$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$dir"
  ln -sfn "$dir" "$CURRENT"
}

start_node() {
  local name="$1" args pid
  args=$(node_args "$name")
  if pid=$(pid_of "$name"); then
    echo "$name already runs (pid $pid)"
    return 0
  fi
  [ -d "$CURRENT" ] || new_run_dir
  # setsid: a process group of its own, so kill/stop reach every process of the node.
  # shellcheck disable=SC2086
  setsid "$PY" $args >>"$CURRENT/$name.log" 2>&1 < /dev/null &
  echo $! >"$CURRENT/$name.pid"
  echo "started $name (pid $!, log run/current/$name.log)"
}

signal_node() {
  local name="$1" sig="$2" pid
  if pid=$(pid_of "$name"); then
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    return 0
  fi
  return 1
}

stop_node() {
  local name="$1" pid i
  pid=$(pid_of "$name") || { echo "$name is not running"; return 0; }
  signal_node "$name" TERM
  for i in $(seq 1 100); do
    alive "$pid" || { echo "stopped $name"; rm -f "$CURRENT/$name.pid"; return 0; }
    sleep 0.05
  done
  echo "$name did not stop within 10s: killing it"
  signal_node "$name" KILL
  rm -f "$CURRENT/$name.pid"
}

all_nodes() { node_lines | cut -f1; }

# Before a start: a fresh checkout gets its keys (only if there are none at
# all: a host that was given its own keys never gets others made for it).
ensure_keys() { "$PY" -m common.cluster keys --if-none --config "$CONFIG"; }

start_all() {
  local name running=0
  for name in $(all_nodes); do
    if pid_of "$name" >/dev/null; then running=1; fi
  done
  if [ "$running" = 0 ]; then new_run_dir; fi
  for name in $(all_nodes); do start_node "$name"; done
  echo "logs: $(readlink "$CURRENT")"
  "$PY" -m common.cluster wait --config "$CONFIG" --timeout 60
}

stop_all() {
  local name
  # The frontend first, the broker last, so that nodes can say goodbye on the bus.
  for name in $(all_nodes | tac); do stop_node "$name"; done
}

status() {
  local name pid
  for name in $(all_nodes); do
    if pid=$(pid_of "$name"); then
      printf '  %-10s running  pid %s\n' "$name" "$pid"
    else
      printf '  %-10s stopped\n' "$name"
    fi
  done
  "$PY" -m common.cluster status --config "$CONFIG" || true
}

cmd="${1:-up}"
[ $# -gt 0 ] && shift

case "$cmd" in
  help|-h|--help) usage ;;
  install) install ;;
  up)
    install
    load_nodes
    ensure_keys
    start_all
    echo "press Ctrl-C to stop every node"
    trap 'echo; stop_all; exit 0' INT TERM
    while true; do sleep 1 & wait $!; done
    ;;
  start)
    install
    load_nodes
    ensure_keys
    if [ $# -gt 0 ]; then start_node "$1"; else start_all; fi
    ;;
  stop)
    install
    load_nodes
    if [ $# -gt 0 ]; then stop_node "$1"; else stop_all; fi
    ;;
  kill)
    [ $# -gt 0 ] || { echo "usage: ./run.sh kill <node>" >&2; exit 2; }
    install
    load_nodes
    node_args "$1" >/dev/null
    if signal_node "$1" KILL; then echo "killed $1 (SIGKILL)"; rm -f "$CURRENT/$1.pid"; else echo "$1 is not running"; fi
    ;;
  status) install; load_nodes; status ;;
  logs)
    if [ $# -gt 0 ]; then tail -n 50 -F "$CURRENT/$1.log"; else tail -n 20 -F "$CURRENT"/*.log; fi
    ;;
  monitor) install; exec "$PY" -m broker.monitor --config "$CONFIG" "$@" ;;
  keys) install; exec "$PY" -m common.cluster keys --config "$CONFIG" "$@" ;;
  backup|restore)
    [ $# -gt 0 ] || { echo "usage: ./run.sh backup DIR [--replica N] | ./run.sh restore DIR [--force]" >&2; exit 2; }
    # DIR as the caller meant it: relative to where run.sh was run from ($OLDPWD, before its cd).
    dir="$1"; shift
    case "$dir" in /*) ;; *) dir="$OLDPWD/$dir" ;; esac
    install
    if [ "$cmd" = backup ]; then
      exec "$PY" -m order.backup save "$dir" --config "$CONFIG" "$@"
    fi
    exec "$PY" -m order.backup restore "$dir" --config "$CONFIG" --run-dir "$CURRENT" "$@"
    ;;
  reset)
    [ $# -gt 0 ] || { echo "usage: ./run.sh reset <node|all>" >&2; exit 2; }
    install
    load_nodes
    if [ "$1" = all ]; then
      stop_all
    else
      case "$1" in broker|frontend*) ;; *) node_args "$1" >/dev/null ;; esac
      if pid_of "$1" >/dev/null; then stop_node "$1"; fi
    fi
    exec "$PY" -m common.cluster reset "$1" --config "$CONFIG"
    ;;
  test)
    install "[test]"
    exec "$PY" -m pytest "$@"
    ;;
  *) usage >&2; exit 2 ;;
esac
