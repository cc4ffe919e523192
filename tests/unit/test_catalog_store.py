"""The catalog's rules (catalog/rules.py) over both of its stores, SQLite
(catalog/store.py, on a temporary file) and memory (what the simulator runs):
lookups, trade batches with their journal and idempotency, the fence; and,
for SQLite, the CSV import and what survives a close and reopen."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from catalog.rules import Catalog, MemoryCatalogStore, StaleEpoch, Stock
from catalog.store import SqliteCatalogStore
from common import codec
from common.errors import ConfigError, RemoteProtocolError, StorageFull
from common.protocol import (
    PROTOCOL_VERSION, ApplyTrades, Fence, JournalEntry, Lookup, StockInfo, TradeItem, TradeOutcome,
    TradesApplied,
)

REPO = Path(__file__).resolve().parents[2]

CSV = """name,price,quantity,volume
GameStart,15.99,100,0
FishCo,24.50,10,5
BoarCo,31.25,0,0
"""


@pytest.fixture
def csv_path(tmp_path) -> Path:
    path = tmp_path / "stocks.csv"
    path.write_text(CSV)
    return path


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "data" / "catalog.sqlite3"


def open_sqlite(db_path: Path, csv_path: Path) -> Catalog:
    return Catalog(SqliteCatalogStore(db_path, csv_path))


def csv_stocks() -> dict[str, Stock]:
    rows = [line.split(",") for line in CSV.splitlines()[1:]]
    return {name: Stock(name, float(price), int(qty), int(volume), 1) for name, price, qty, volume in rows}


@pytest.fixture(params=["sqlite", "memory"])
def store(request, db_path, csv_path):
    """The catalog's rules over one of its two stores (every rule must hold on both)."""
    c = open_sqlite(db_path, csv_path) if request.param == "sqlite" else Catalog(MemoryCatalogStore(csv_stocks()))
    yield c
    c.store.close()


def buy(rid: str, name: str = "GameStart", quantity: int = 1) -> TradeItem:
    return TradeItem(request_id=rid, name=name, quantity=quantity, side="buy")


def sell(rid: str, name: str = "GameStart", quantity: int = 1) -> TradeItem:
    return TradeItem(request_id=rid, name=name, quantity=quantity, side="sell")


def state(store: Catalog) -> tuple:
    """Everything a trade may change."""
    return dict(store.stocks), store.seq, store.fence, store.journal_after(0, 10_000)


# --- the CSV import -----------------------------------------------------------------


@pytest.fixture
def sqlite(db_path, csv_path):
    c = open_sqlite(db_path, csv_path)
    yield c
    c.store.close()


def test_the_csv_is_loaded_into_an_empty_database(sqlite, db_path):
    store = sqlite
    assert db_path.exists()
    assert set(store.stocks) == {"GameStart", "FishCo", "BoarCo"}
    assert store.lookup("FishCo") == StockInfo(name="FishCo", price=24.5, quantity=10, volume=5, version=1, seq=0)
    assert (store.seq, store.fence) == (0, 0)
    assert store.journal_after(0, 10) == ([], False)


def test_the_repository_csv_loads(tmp_path):
    s = open_sqlite(tmp_path / "c.sqlite3", REPO / "catalog" / "stocks.csv")
    try:
        assert len(s.stocks) == 15
        assert s.lookup("GameStart").quantity == 100
    finally:
        s.store.close()


def test_the_csv_is_loaded_once_only(db_path, csv_path):
    s = open_sqlite(db_path, csv_path)
    s.apply(1, [buy("r1", quantity=10)])
    s.store.close()
    csv_path.write_text("name,price,quantity,volume\nOther,1.0,5,0\n")  # ignored from now on
    s = open_sqlite(db_path, csv_path)
    try:
        assert set(s.stocks) == {"GameStart", "FishCo", "BoarCo"}
        assert s.lookup("GameStart").quantity == 90
    finally:
        s.store.close()


@pytest.mark.parametrize("text,words", [
    ("name,price,quantity,volume\n", "lists no stocks"),
    ("name,price,quantity,volume\nA,abc,1,0\n", ":2:"),
    ("name,price,quantity,volume\nA,1.0,1,0\nB,1.0,x,0\n", ":3:"),
    ("name,price,quantity,volume\nA,1.0,1\n", ":2:"),          # a missing column
    ("name,price,quantity\nA,1.0,1\n", ":2:"),                 # no volume column at all
    ("name,price,quantity,volume\nA,1.0,-1,0\n", "not negative"),
    ("name,price,quantity,volume\nA,nan,1,0\n", "finite"),
    ("name,price,quantity,volume\n ,1.0,1,0\n", "name must be set"),
])
def test_a_bad_csv_is_a_config_error(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        SqliteCatalogStore(tmp_path / "c.sqlite3", path)
    assert words in str(info.value)


def test_a_missing_csv_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="stocks_csv"):
        SqliteCatalogStore(tmp_path / "c.sqlite3", tmp_path / "nope.csv")


def test_a_stock_named_twice_in_the_csv_is_a_config_error(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("name,price,quantity,volume\nA,1.0,1,0\nB,1.0,1,0\nA,2.0,2,0\n")
    with pytest.raises(ConfigError, match="A more than once"):
        SqliteCatalogStore(tmp_path / "c.sqlite3", path)


# --- lookups -----------------------------------------------------------------------------


def test_lookup_unknown_stock(store):
    assert store.lookup("NoSuch") is None
    assert store.lookup("gamestart") is None  # names are case-sensitive


def test_lookup_carries_the_current_change_number(store):
    store.apply(1, [buy("r1"), buy("r2", "FishCo")])
    assert store.lookup("BoarCo").seq == 2  # unchanged stock, but read at change 2
    assert store.lookup("GameStart").version == 2


# --- applying trades ----------------------------------------------------------------------------


def test_buy_and_sell(store):
    applied = store.apply(1, [buy("r1", quantity=30), sell("r2", "FishCo", quantity=5)])
    assert applied.outcomes == [
        TradeOutcome("r1", "ok", seq=1, stock=StockInfo("GameStart", 15.99, 70, 30, 2, 1)),
        TradeOutcome("r2", "ok", seq=2, stock=StockInfo("FishCo", 24.5, 15, 10, 2, 2)),
    ]
    assert [(s.name, seq) for s, seq in applied.changes] == [("GameStart", 1), ("FishCo", 2)]
    assert store.seq == 2
    assert store.lookup("GameStart") == StockInfo("GameStart", 15.99, 70, 30, 2, 2)


def test_trades_in_a_batch_apply_in_order(store):
    applied = store.apply(1, [buy("r1", "FishCo", 10), buy("r2", "FishCo", 1), sell("r3", "FishCo", 4),
                              buy("r4", "FishCo", 4)])
    assert [o.status for o in applied.outcomes] == ["ok", "not_enough_stock", "ok", "ok"]
    assert [o.seq for o in applied.outcomes] == [1, None, 2, 3]
    fish = store.lookup("FishCo")
    assert (fish.quantity, fish.volume, fish.version) == (0, 23, 4)
    assert [stock.version for stock, _ in applied.changes] == [2, 3, 4]


def test_buying_exactly_what_is_left(store):
    assert store.apply(1, [buy("r1", "FishCo", 10)]).outcomes[0].status == "ok"
    assert store.lookup("FishCo").quantity == 0


def test_not_enough_stock_changes_nothing_but_is_journaled(store):
    before = store.lookup("FishCo")
    applied = store.apply(1, [buy("r1", "FishCo", 11)])
    assert applied.outcomes == [TradeOutcome("r1", "not_enough_stock")]
    assert applied.changes == []
    assert store.lookup("FishCo") == before and store.seq == 0
    assert store.journal_after(0, 10) == ([], False)  # only applied trades are in the journal pages
    # ... but the refusal is remembered under its request id:
    store.apply(1, [sell("r2", "FishCo", 100)])
    assert store.apply(1, [buy("r1", "FishCo", 11)]).outcomes == [TradeOutcome("r1", "not_enough_stock")]


def test_unknown_stock(store):
    applied = store.apply(1, [buy("r1", "NoSuch"), sell("r2", "NoSuch")])
    assert [o.status for o in applied.outcomes] == ["stock_not_found", "stock_not_found"]
    assert store.seq == 0 and "NoSuch" not in store.stocks


def test_a_replayed_request_id_returns_the_first_result_and_changes_nothing(store):
    first = store.apply(1, [buy("r1", quantity=5)]).outcomes[0]
    before = state(store)
    again = store.apply(1, [buy("r1", quantity=5)])
    assert again.outcomes == [TradeOutcome("r1", "ok", seq=first.seq)]  # no stock: a replay
    assert again.changes == []
    assert state(store) == before


def test_a_replay_inside_one_batch(store):
    applied = store.apply(1, [buy("r1", quantity=5), buy("r1", quantity=5)])
    assert applied.outcomes[1] == TradeOutcome("r1", "ok", seq=1)
    assert store.lookup("GameStart").quantity == 95


def test_a_replay_in_a_later_epoch_still_returns_the_first_result(store):
    store.apply(1, [buy("r1", quantity=5)])
    assert store.apply(2, [buy("r1", quantity=5)]).outcomes == [TradeOutcome("r1", "ok", seq=1)]
    assert store.lookup("GameStart").quantity == 95


@pytest.mark.parametrize("reused", [
    buy("r1", quantity=6), buy("r1", "FishCo", 5), sell("r1", quantity=5),
], ids=["other quantity", "other stock", "other side"])
def test_a_request_id_reused_for_another_trade_is_refused(store, reused):
    store.apply(1, [buy("r1", quantity=5)])
    before = state(store)
    applied = store.apply(1, [reused])
    assert applied.outcomes == [TradeOutcome("r1", "key_reused")]
    assert state(store) == before
    # the first trade keeps its id:
    assert store.apply(1, [buy("r1", quantity=5)]).outcomes == [TradeOutcome("r1", "ok", seq=1)]


def test_an_empty_batch_changes_nothing_but_the_fence(store):
    applied = store.apply(3, [])
    assert (applied.outcomes, applied.changes) == ([], [])
    assert (store.seq, store.fence) == (0, 3)


def test_change_numbers_rise_by_one_across_batches_and_stocks(store):
    seqs = []
    for i in range(5):
        applied = store.apply(1, [buy(f"a{i}"), buy(f"x{i}", "NoSuch"), sell(f"b{i}", "FishCo")])
        seqs += [seq for _, seq in applied.changes]
    assert seqs == list(range(1, 11))


# --- the fence -----------------------------------------------------------------------------------


def test_a_trade_from_a_stale_epoch_is_refused_and_changes_nothing(store):
    store.raise_fence(5)
    before = state(store)
    with pytest.raises(StaleEpoch) as info:
        store.apply(4, [buy("r1")])
    assert info.value.fence == 5
    assert state(store) == before
    # the refused request id was not journaled: it may still be carried out by the current leader
    assert store.apply(5, [buy("r1")]).outcomes[0].status == "ok"


def test_a_batch_raises_the_fence(store):
    store.apply(7, [buy("r1")])
    assert store.fence == 7
    with pytest.raises(StaleEpoch):
        store.apply(6, [buy("r2")])


def test_raise_fence(store):
    store.raise_fence(3)
    store.raise_fence(3)  # the same epoch again is fine (the leader resends)
    assert store.fence == 3
    with pytest.raises(StaleEpoch) as info:
        store.raise_fence(2)
    assert info.value.fence == 3
    store.raise_fence(4)
    assert store.fence == 4


def test_journal_after_pages_through_applied_trades_in_order(store):
    for i in range(5):
        store.apply(1, [buy(f"r{i}", quantity=i + 1), buy(f"refused{i}", "NoSuch")])
    page, more = store.journal_after(0, 2)
    assert page == [JournalEntry(1, "r0", "GameStart", 1, "buy"), JournalEntry(2, "r1", "GameStart", 2, "buy")]
    assert more
    page, more = store.journal_after(2, 2)
    assert [e.seq for e in page] == [3, 4] and more
    page, more = store.journal_after(4, 2)
    assert [e.seq for e in page] == [5] and not more
    assert store.journal_after(5, 2) == ([], False)
    page, more = store.journal_after(0, 5)
    assert len(page) == 5 and not more  # exactly a page: nothing more


# --- durability ------------------------------------------------------------------------------------


def test_state_survives_close_and_reopen(db_path, csv_path):
    s = open_sqlite(db_path, csv_path)
    s.apply(2, [buy("r1", quantity=3), sell("r2", "FishCo", 4), buy("r3", "BoarCo")])
    s.raise_fence(4)
    before = state(s)
    s.store.close()
    s = open_sqlite(db_path, csv_path)
    try:
        assert state(s) == before
        assert (s.seq, s.fence) == (2, 4)
        # the journal survived too: a replay is still a replay, a reuse still a reuse
        assert s.apply(4, [buy("r1", quantity=3)]).outcomes == [TradeOutcome("r1", "ok", seq=1)]
        assert s.apply(4, [buy("r3", "BoarCo")]).outcomes == [TradeOutcome("r3", "not_enough_stock")]
        assert s.apply(4, [buy("r2", "FishCo", 4)]).outcomes == [TradeOutcome("r2", "key_reused")]
        with pytest.raises(StaleEpoch):
            s.apply(3, [buy("r9")])
    finally:
        s.store.close()


def test_a_failed_batch_leaves_nothing_behind(sqlite, db_path, csv_path):
    store = sqlite
    before = state(store)
    bad = TradeItem(request_id="r2", name="GameStart", quantity=2**63, side="sell")  # overflows SQLite
    with pytest.raises(OverflowError):
        store.apply(1, [buy("r1"), bad])
    assert state(store) == before
    other = open_sqlite(db_path, csv_path)  # what is on disk
    try:
        assert state(other) == before
    finally:
        other.store.close()


# --- numbers beyond SQLite's 64-bit integers ------------------------------------------------------------


@pytest.mark.parametrize("field", ["epoch", "after_seq"])
def test_a_fence_with_a_number_beyond_int64_is_refused_at_the_wire(field):
    # SQLite stores signed 64-bit integers; an OverflowError would end the catalog's loop,
    # so the codec must refuse such a number before any store sees it.
    body = {"v": PROTOCOL_VERSION, "msg": "fence", "epoch": 1, "after_seq": 0, "limit": 10, field: 2**63}
    with pytest.raises(RemoteProtocolError, match="64-bit"):
        codec.decode(msgpack.packb(body))


def test_the_largest_int64_fence_and_change_number_reach_the_store(store):
    big = 2**63 - 1
    fence = codec.decode(msgpack.packb({"v": PROTOCOL_VERSION, "msg": "fence", "epoch": big, "after_seq": big, "limit": 10}))
    store.raise_fence(fence.epoch)
    assert store.journal_after(fence.after_seq, fence.limit) == ([], False)
    assert store.fence == big


# --- group commit -------------------------------------------------------------------------------------


class CountingStore(MemoryCatalogStore):
    def __init__(self, stocks) -> None:
        super().__init__(stocks)
        self.commits = 0

    def commit(self, change) -> None:
        self.commits += 1
        super().commit(change)


def batch(n: int, epoch: int, *trades: TradeItem) -> ApplyTrades:
    return ApplyTrades(epoch=epoch, batch=n, trades=list(trades))


def test_batches_that_arrive_together_share_one_commit_and_settle_in_order():
    store = CountingStore(csv_stocks())
    catalog = Catalog(store)
    answers = catalog.handle_all([
        batch(1, 1, buy("a", "FishCo", 6)),
        batch(2, 1, buy("b", "FishCo", 6), buy("a", "FishCo", 6)),  # b sees a's change; a is a replay
        batch(3, 1, sell("c", "FishCo", 1)),
    ])
    replies, changes = answers.replies, answers.changes
    assert store.commits == 1
    assert [r.batch for r in replies] == [1, 2, 3]
    assert replies[0].outcomes[0] == TradeOutcome("a", "ok", seq=1, stock=StockInfo("FishCo", 24.5, 4, 11, 2, 1))
    assert replies[1].outcomes == [TradeOutcome("b", "not_enough_stock"), TradeOutcome("a", "ok", seq=1)]
    assert replies[2].outcomes[0].seq == 2
    assert [(c.name, c.quantity, c.seq) for c in changes] == [("FishCo", 4, 1), ("FishCo", 5, 2)]
    assert (catalog.seq, catalog.lookup("FishCo").quantity) == (2, 5)


def test_a_stale_batch_in_a_group_is_refused_alone():
    store = CountingStore(csv_stocks())
    catalog = Catalog(store)
    replies = catalog.handle_all([batch(1, 3, buy("a")), batch(2, 2, buy("b")), batch(3, 3, buy("c"))]).replies
    assert [type(r).__name__ for r in replies] == ["TradesApplied", "Error", "TradesApplied"]
    assert (replies[1].code, replies[1].epoch, replies[1].batch) == ("stale_epoch", 3, 2)
    assert store.commits == 1 and catalog.fence == 3 and catalog.seq == 2
    assert store.journaled("b") is None  # nothing of it was written


def test_a_lookup_between_batches_sees_what_was_committed_before_it():
    store = CountingStore(csv_stocks())
    catalog = Catalog(store)
    replies = catalog.handle_all([batch(1, 1, buy("a", quantity=10)), Lookup("GameStart"),
                                  batch(2, 1, buy("b", quantity=10))]).replies
    assert replies[1].quantity == 90 and store.commits == 2
    assert catalog.lookup("GameStart").quantity == 80


def test_a_failed_group_commit_changes_nothing():
    class FailingStore(MemoryCatalogStore):
        def commit(self, change) -> None:
            raise OSError("disk full")

    catalog = Catalog(FailingStore(csv_stocks()))
    before = state(catalog)
    with pytest.raises(OSError):
        catalog.handle_all([batch(1, 1, buy("a")), batch(2, 2, buy("b"))])
    assert state(catalog) == before


class FillingStore(MemoryCatalogStore):
    """A store whose disk fills after ``room`` commits."""

    def __init__(self, stocks, room: int) -> None:
        super().__init__(stocks)
        self.room = room

    def commit(self, change) -> None:
        if self.room == 0:
            raise StorageFull("storage full: cannot write catalog.sqlite3", "catalog.sqlite3", free_bytes=0)
        self.room -= 1
        super().commit(change)


def test_a_full_disk_refuses_its_group_and_later_writes_but_keeps_what_committed_before():
    catalog = Catalog(FillingStore(csv_stocks(), room=1))
    answers = catalog.handle_all([
        batch(1, 1, buy("a", quantity=10)),            # the first group: committed
        Lookup("GameStart"),
        batch(2, 1, buy("b", quantity=10)),            # the second group: the disk is full
        batch(3, 1, buy("c", quantity=10)),
        Lookup("GameStart"),                           # still answered, from what committed
        Fence(epoch=2, after_seq=0, limit=10),         # needs a write: refused
    ])
    applied, first_look, refused_b, refused_c, second_look, fence = answers.replies
    assert applied.batch == 1 and applied.outcomes[0].status == "ok"
    assert first_look.quantity == 90 and second_look.quantity == 90
    for reply, n in ((refused_b, 2), (refused_c, 3)):
        assert (reply.code, reply.batch) == ("storage_unavailable", n)
        assert "storage full" in reply.message
    assert (fence.code, fence.batch) == ("storage_unavailable", None)
    assert [(c.name, c.quantity, c.seq) for c in answers.changes] == [("GameStart", 90, 1)]
    assert isinstance(answers.full, StorageFull)
    assert (catalog.seq, catalog.fence, catalog.store.journaled("b")) == (1, 1, None)


def test_after_a_full_disk_in_a_read_what_needs_no_write_is_still_answered():
    catalog = Catalog(FillingStore(csv_stocks(), room=2))
    catalog.handle_all([batch(1, 1, buy("a", quantity=3))])
    answers = catalog.handle_all([
        batch(2, 1, buy("b", quantity=3)),             # committed
        Lookup("GameStart"),
        batch(3, 1, buy("c", quantity=3)),             # the disk is full now
        batch(4, 0, buy("d", quantity=3)),             # a deposed leader's, in the same group
        Fence(epoch=1, after_seq=0, limit=10),         # already up: no write
        batch(1, 1, buy("a", quantity=3)),             # a resend of a journaled trade: no write
    ])
    applied_b, _, refused_c, stale_d, fenced, replayed_a = answers.replies
    assert applied_b.outcomes[0].seq == 2 and (refused_c.code, refused_c.batch) == ("storage_unavailable", 3)
    assert (stale_d.code, stale_d.epoch, stale_d.batch) == ("stale_epoch", 1, 4)  # told it is fenced, still
    assert fenced.epoch == 1 and [e.request_id for e in fenced.entries] == ["a", "b"]
    assert replayed_a.outcomes == [TradeOutcome("a", "ok", seq=1)]
    assert isinstance(answers.full, StorageFull) and [c.seq for c in answers.changes] == [2]


def test_a_resend_of_applied_batches_is_answered_while_the_disk_is_full():
    catalog = Catalog(FillingStore(csv_stocks(), room=1))
    first = catalog.handle(batch(1, 1, buy("a", quantity=3)))[0]
    answers = catalog.handle_all([batch(1, 1, buy("a", quantity=3))])   # the leader's resend
    assert answers.full is None and answers.changes == []
    assert answers.replies[0] == TradesApplied(batch=1, outcomes=[TradeOutcome("a", "ok", seq=1)])
    assert first.outcomes[0].seq == 1
    # a replay from a higher epoch raises the fence, which needs a write
    refused = catalog.handle_all([batch(1, 2, buy("a", quantity=3))]).replies[0]
    assert (refused.code, refused.batch, catalog.fence) == ("storage_unavailable", 1, 1)


def test_a_catalog_that_lost_its_data_numbers_on_from_the_leaders_log(store):
    # after ./run.sh reset 'catalog!' the log already holds change numbers up to 50
    fenced = store.handle(Fence(epoch=2, after_seq=50, limit=10))[0]
    assert fenced.entries == [] and (store.seq, store.fence) == (50, 2)
    applied = store.handle(batch(1, 2, buy("new")))[0]
    assert applied.outcomes[0].seq == 51
    store.handle(Fence(epoch=2, after_seq=40, limit=10))  # a log behind the catalog moves nothing
    assert store.seq == 51
