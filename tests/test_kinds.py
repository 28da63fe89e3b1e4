"""The registry of action kinds is the one place a kind is described: everything else follows it."""

from __future__ import annotations

from reconciler.apply import Executor
from reconciler.kinds import INVITING, KINDS, PHASES, REMOVING, SERIAL
from reconciler.plan import Action


def test_every_kind_can_be_executed_and_has_its_words() -> None:
    for name, kind in KINDS.items():
        # Memberships go out one team at a time (``_add_members``), not one action at a time.
        handler = "_add_members" if name == "add_member" else f"_do_{name}"
        assert callable(getattr(Executor, handler, None)), f"no executor handler for {name}"
        assert kind.label and kind.one and kind.many and kind.verb
        assert Action(kind=name, address="x", reason="r", params={}).symbol == kind.symbol


def test_removals_and_roster_writes_are_serial_and_invitations_are_not() -> None:
    assert REMOVING <= SERIAL and "add_member" in SERIAL
    assert not INVITING & SERIAL
    assert PHASES.index("add_member") < PHASES.index("create_invitation") < PHASES.index("remove_member")
