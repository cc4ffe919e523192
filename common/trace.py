"""Where one trade's time goes: the stages of a traced trade, pure.

A client that sends ``POST /orders`` with the header ``X-Bazaar-Trace: 1``
gets back, in the answer's ``X-Bazaar-Trace`` header, a JSON map of
timestamps taken along the trade's path (the frontend's, the leader's and
the acknowledging follower's; ``PlaceTrade.trace`` and its
siblings carry them over ZeroMQ). Every timestamp is ``time.monotonic()``,
which on Linux is one clock for every process of the machine; on several
hosts only the stages within one node mean anything.

Nothing is stamped for a trade that did not ask: the cost of tracing when
it is off is one ``if`` per message.

:func:`stages` turns the timestamps into durations, in the order the trade
crosses them; together they add up to the client's whole latency (the
leader's own fsync runs in parallel with the follower's and is counted only
for the part that outlasted the follower's acknowledgement).
"""

from __future__ import annotations

TRACE_HEADER = "X-Bazaar-Trace"

# (stage, from timestamp, to timestamp), in path order.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("http in (client to handler)", "client_send", "fe_start"),
    ("frontend: parse, to leader", "fe_start", "fe_sent"),
    ("frontend to leader", "fe_sent", "ld_recv"),
    ("leader: decide, log, send to followers", "ld_recv", "ld_repl_out"),
    ("leader to follower", "ld_repl_out", "fo_recv"),
    ("follower: append and fsync", "fo_recv", "fo_replied"),
    ("follower to leader", "fo_replied", "ld_ack_in"),
    ("leader: own fsync beyond the ack", "ld_ack_in", "ld_committed"),
    ("leader: commit to reply", "ld_committed", "ld_reply_out"),
    ("leader to frontend", "ld_reply_out", "fe_reply"),
    ("frontend: reply to response", "fe_reply", "fe_end"),
    ("http out (response to client)", "fe_end", "client_done"),
)

# The leader's own fsync, in parallel with stages 5 to 7 (not in the sum).
PARALLEL = (("leader: own fsync (parallel)", "ld_repl_out", "ld_synced"),)


def stages(stamps: dict[str, float]) -> dict[str, float] | None:
    """Durations (seconds) of every stage of one traced trade.

    :returns: None if a timestamp is missing (the trade was a replay, or it
        committed without a traced follower's acknowledgement).
    """
    t = dict(stamps)
    if any(key not in t for key in ("ld_ack_in", "ld_synced")):
        return None
    t["ld_committed"] = max(t["ld_ack_in"], t["ld_synced"])
    out: dict[str, float] = {}
    for name, start, end in STAGES + PARALLEL:
        if start not in t or end not in t:
            return None
        out[name] = t[end] - t[start]
    return out
