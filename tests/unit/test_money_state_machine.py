"""A hypothesis state machine over the money repositories (RELIABILITY §5.2 A8): top-ups,
card issue and redemption, holds settled now or later, refunds and check-ins, in any order.
After every step each balance equals a model kept in Python, equals its ledger minus open
holds (the audit), and is never below zero; every card is credited at most once.

It drives the repositories directly on a temporary SQLite file (no HTTP server), so 200
runs of up to 15 steps take about fifteen seconds on a
busy 2-core machine.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from relaykit.errors import InsufficientQuota
from relaykit.store import accounts, billing, cards
from relaykit.store.store import Store

KEY = b"k" * 32
USERS = ("ann", "ben", "cat")
amounts = st.integers(min_value=1, max_value=5_000)


class Money(RuleBasedStateMachine):
    cards_ = Bundle("cards")
    holds = Bundle("holds")
    charged = Bundle("charged")

    shared: Store | None = None  # one temporary database per test process, emptied for every run

    def __init__(self) -> None:
        super().__init__()
        if Money.shared is None:
            Money.shared = Store(f"sqlite:///{tempfile.mkdtemp(prefix='relaykit-money-')}/m.db")
            Money.shared.migrate()
            Money.shared.db.connect()  # one connection throughout: no per-step connect and pragmas
            Money.shared.db.execute_sql("PRAGMA synchronous=OFF")  # durability is not under test here
        self.store = Money.shared
        t = self.store.t
        with self.store.db.atomic():
            for table in (t.Ledger, t.Hold, t.Card, t.Token, t.Session, t.User):
                table.delete().execute()
        self.ids: dict[str, int] = {}
        self.balance = dict.fromkeys(USERS, 0)
        self.held = dict.fromkeys(USERS, 0)
        self.redeemed: set[str] = set()
        self.checked: set[tuple[str, int]] = set()
        self.refunded: set[str] = set()
        self.n = 0

    def tx(self, fn: Any) -> Any:
        """One transaction, as the CLI's ``store.tx`` and the writer's savepoints make them."""
        with self.store.db.atomic():
            return fn(self.store.t)

    @initialize()
    def customers(self) -> None:
        for name in USERS:
            self.ids[name] = self.tx(lambda t, n=name: int(accounts.create_user(t, n).id))

    @rule(user=st.sampled_from(USERS), amount=amounts)
    def topup(self, user: str, amount: int) -> None:
        assert self.tx(lambda t: billing.topup(t, user, amount)) == self.balance[user] + amount
        self.balance[user] += amount

    @rule(target=cards_, amount=amounts, count=st.integers(1, 3))
    def issue(self, amount: int, count: int) -> Any:
        codes = self.tx(lambda t: cards.issue(t, KEY, amount=amount, count=count, prefix="", expires_at=None,
                                              batch="sm"))
        return multiple(*[(c, amount) for c in codes])

    @rule(card=cards_, user=st.sampled_from(USERS))
    def redeem(self, card: tuple[str, int], user: str) -> None:
        code, amount = card
        try:
            done = self.tx(lambda t: cards.redeem(t, KEY, code, self.ids[user]))
        except cards.CardUnavailable:
            assert code in self.redeemed
            return
        assert code not in self.redeemed, "a card was credited twice"
        self.redeemed.add(code)
        self.balance[user] += amount
        assert done.amount == amount and done.balance == self.balance[user]

    def _hold(self, user: str, amount: int) -> Any:
        self.n += 1
        rid = f"r{self.n}"
        try:
            ticket = self.tx(lambda t: billing.place_hold(t, request_id=rid, user_id=self.ids[user], token_id=None,
                                                          token_limited=False, amount=amount, model="m"))
        except InsufficientQuota:
            assert self.balance[user] < amount, "a hold that fits was refused"
            return None
        assert self.balance[user] >= amount, "a hold that does not fit was taken"
        self.balance[user] -= amount
        self.held[user] += amount
        return ticket

    def _settle(self, ticket: Any, actual: int) -> str | None:
        user = next(u for u, i in self.ids.items() if i == ticket.user_id)
        got = self.tx(lambda t: billing.settle_hold(t, ticket, actual, None))
        assert got == actual
        self.held[user] -= ticket.amount
        self.balance[user] += ticket.amount - actual
        return ticket.request_id if actual else None

    @rule(target=charged, user=st.sampled_from(USERS), amount=amounts, share=st.floats(0, 1))
    def request(self, user: str, amount: int, share: float) -> Any:
        """A request that is held and settled at once (actual cost up to the hold)."""
        ticket = self._hold(user, amount)
        if ticket is None:
            return multiple()
        rid = self._settle(ticket, int(amount * share))
        return multiple(rid) if rid else multiple()

    @rule(target=holds, user=st.sampled_from(USERS), amount=amounts)
    def start_request(self, user: str, amount: int) -> Any:
        """A request still in flight: its hold stays open across other steps."""
        ticket = self._hold(user, amount)
        return multiple(ticket) if ticket is not None else multiple()

    @rule(target=charged, ticket=consumes(holds), share=st.floats(0, 1))
    def finish_request(self, ticket: Any, share: float) -> Any:
        rid = self._settle(ticket, int(ticket.amount * share))
        # settling twice changes nothing (a retried settlement)
        assert self.tx(lambda t: billing.settle_hold(t, ticket, 1, None)) == 0
        return multiple(rid) if rid else multiple()

    @rule(rid=charged, part=st.one_of(st.none(), amounts))
    def refund(self, rid: str, part: int | None) -> None:
        charge = self.tx(lambda t: t.Ledger.get((t.Ledger.kind == "charge") & (t.Ledger.request_id == rid)))
        user = next(u for u, i in self.ids.items() if i == charge.user_id)
        try:
            given = self.tx(lambda t: billing.refund(t, rid, part))
        except billing.AlreadyDone:
            assert rid in self.refunded
            return
        assert rid not in self.refunded
        self.refunded.add(rid)
        assert 0 < given <= -charge.amount
        assert given == (-charge.amount if part is None else min(part, -charge.amount))
        self.balance[user] += given

    @rule(user=st.sampled_from(USERS), day=st.integers(0, 3), amount=amounts)
    def checkin(self, user: str, day: int, amount: int) -> None:
        try:
            self.tx(lambda t: billing.checkin(t, self.ids[user], f"2026-01-0{day + 1}", amount))
        except billing.AlreadyDone:
            assert (user, day) in self.checked
            return
        assert (user, day) not in self.checked
        self.checked.add((user, day))
        self.balance[user] += amount

    @invariant()
    def books_balance(self) -> None:
        if not self.ids:
            return

        def look(t: Any) -> tuple[list[Any], list[str]]:
            return billing.audit(t), [r.request_id for r in t.Ledger.select(t.Ledger.request_id)
                                      .where(t.Ledger.kind == "card")]

        audit, card_refs = self.tx(look)
        for line in audit:
            assert line.ok, line
            assert line.balance == self.balance[line.user] >= 0
            assert line.open_holds == self.held[line.user]
        assert len(card_refs) == len(set(card_refs)) == len(self.redeemed), "a card was credited twice"

    def teardown(self) -> None:
        if self.store.db.in_transaction():  # a failed step must not leave the next run inside it
            self.store.db.rollback()


Money.TestCase.settings = settings(max_examples=200, stateful_step_count=15, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestMoney = Money.TestCase


def teardown_module() -> None:
    if Money.shared is not None:
        path = Money.shared.url.removeprefix("sqlite:///")
        Money.shared.db.close()
        shutil.rmtree(path.rsplit("/", 1)[0], ignore_errors=True)
        Money.shared = None
