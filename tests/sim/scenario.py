"""Seeded fault schedules for :class:`tests.sim.world.World`."""

from __future__ import annotations

from .world import CATALOG, STOCKS, NetConfig, World


def run(seed: int, duration: float = 3.0, trades: int = 60, trace: bool = False,
        net: NetConfig | None = None) -> World:
    """Trades from clients while replicas crash, restart, lose their disks and
    get cut off, and the catalog crashes (losing its last writes, sometimes),
    pauses, loses its disk and gets cut off; then settle and check everything.

    :raises Violation: with the seed in the message, when a promise broke.
    """
    world = World(seed, net=net, trace=trace)
    rng = world.rng
    names = sorted(STOCKS)
    for k in range(trades):
        at = rng.uniform(0.3, duration)
        rid = f"t{seed}-{k}"
        name, qty, side = rng.choice(names), rng.randint(1, 30), rng.choice(("buy", "sell"))
        retry = rng.random() < 0.8
        world._schedule(at, "call", lambda r=rid, n=name, q=qty, s=side, y=retry: world.place(r, n, q, s, y))
    for _ in range(trades):  # order reads of acknowledged trades, at any replica
        world._schedule(rng.uniform(0.3, duration + 0.5), "call", world.read_order)
    t = 0.4
    while t < duration:
        kind = rng.choice(("crash", "crash_leader", "cut", "cut_catalog", "isolate_leader", "crash_catalog",
                           "wipe", "wipe_catalog", "pause_catalog", "nothing"))
        victim = rng.choice(world.ids)
        if kind == "crash":
            world._schedule(t, "call", lambda v=victim: world.crash(v))
            world._schedule(t + rng.uniform(0.05, 0.6), "call", lambda v=victim: world.restart(v))
        elif kind == "crash_leader":
            def crash_leader() -> None:
                for i, node in world.nodes.items():
                    if node is not None and node.raft.is_leader():
                        world.crash(i)
                        world._schedule(world.now + rng.uniform(0.05, 0.6), "call", lambda v=i: world.restart(v))
            world._schedule(t, "call", crash_leader)
        elif kind == "cut":
            other = rng.choice([i for i in world.ids if i != victim])
            world._schedule(t, "call", lambda a=victim, b=other: world.partition(a, b))
            world._schedule(t + rng.uniform(0.1, 0.8), "call", world.heal)
        elif kind == "isolate_leader":
            def isolate_leader() -> None:
                for i, node in world.nodes.items():
                    if node is not None and node.raft.is_leader():
                        world.isolate(i)
                        world._schedule(world.now + rng.uniform(0.1, 0.8), "call", world.heal)
            world._schedule(t, "call", isolate_leader)
        elif kind == "wipe":
            def wipe(v=victim, back=rng.uniform(0.05, 0.6)) -> None:
                # One lost disk at a time: with two of three, a majority forgot the history
                # and nobody may elect anyone (which is what the blank rules make happen).
                if all(not world.logs[p].is_blank() for p in world.ids if p != v):
                    world.wipe(v)
                    world._schedule(world.now + back, "call", lambda: world.restart(v))
            world._schedule(t, "call", wipe)
        elif kind == "crash_catalog":  # sometimes a power cut: its last writes are lost too
            lose = rng.choice((0, 0, 1, 3))
            world._schedule(t, "call", lambda n=lose: world.crash_catalog(n))
            world._schedule(t + rng.uniform(0.05, 0.5), "call", world.restart_catalog)
        elif kind == "wipe_catalog":
            world._schedule(t, "call", world.wipe_catalog)
            world._schedule(t + rng.uniform(0.05, 0.5), "call", world.restart_catalog)
        elif kind == "pause_catalog":
            world._schedule(t, "call", lambda d=rng.uniform(0.05, 0.5): world.pause_catalog(d))
        elif kind == "cut_catalog":
            world._schedule(t, "call", lambda v=victim: world.partition(v, CATALOG))
            world._schedule(t + rng.uniform(0.1, 0.5), "call", world.heal)
        t += rng.uniform(0.1, 0.5)
    try:
        world.run_until(duration)
        world.settle()
    except AssertionError as exc:
        failure = type(exc)(f"seed {seed}: {exc}")
        failure.world = world  # for the trace
        raise failure from exc
    return world
