"""Every kind of action, in one registry: its phase, symbol, wording and nature.

A new kind is one entry here, the planner code that emits it, and the executor's
``_do_<kind>`` handler; the plan's order, the outputs' labels and summaries, the removal
guard and the executor's scheduling all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Effect = Literal["add", "change", "remove", "bookkeeping"]
_SYMBOLS: dict[Effect, str] = {"add": "+", "change": "~", "remove": "-", "bookkeeping": "~"}


@dataclass(frozen=True)
class Kind:
    name: str
    #: A short label, as shown in the plan table ("create team").
    label: str
    #: How the summary counts it: singular, plural, verb ("1 team to create", "2 teams to create").
    one: str
    many: str
    verb: str
    #: ``add``/``change``/``remove`` access; ``bookkeeping`` only records what the tool keeps (ownership, a
    #: sealed id), not a change of anyone's access.
    effect: Effect
    #: May call ``/invitation/new`` (needs the inviter user and the seal key; run in batches).
    invites: bool = False
    #: Rewrites team rosters (or the user rows behind them), organization memberships, or deletes:
    #: LiteLLM loses members when two roster writes overlap, so these never run concurrently.
    serial: bool = False

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self.effect]


#: In phase order: a plan runs inviter -> organizations -> teams -> users -> memberships (of teams, then
#: of organizations) -> invitations -> bookkeeping -> removals (an organization last: after its teams).
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("create_inviter", "create inviter user", "inviter user", "inviter users", "to create", "add", serial=True),
        Kind("create_organization", "create organization", "organization", "organizations", "to create", "add"),
        Kind("update_organization", "update organization", "organization", "organizations", "to update", "change"),
        Kind("create_team", "create team", "team", "teams", "to create", "add"),
        Kind("update_team", "update team", "team", "teams", "to update", "change"),
        Kind("create_user", "create user", "user", "users", "to create", "add"),
        Kind("update_user", "update user", "user", "users", "to update", "change"),
        Kind("add_member", "add to team", "membership", "memberships", "to add", "add", serial=True),
        Kind("update_member", "update membership", "membership", "memberships", "to update", "change", serial=True),
        Kind(
            "add_org_member",
            "add to organization",
            "organization membership",
            "organization memberships",
            "to add",
            "add",
            serial=True,
        ),
        Kind(
            "update_org_member",
            "change organization role",
            "organization membership",
            "organization memberships",
            "to update",
            "change",
            serial=True,
        ),
        Kind("create_invitation", "invite", "invitation", "invitations", "to create", "add", invites=True),
        Kind(
            "renew_invitation",
            "renew invitation",
            "expired invitation",
            "expired invitations",
            "to renew or record as accepted",
            "change",
            invites=True,
        ),
        Kind(
            "replace_invitation",
            "replace exposed link",
            "exposed invitation",
            "exposed invitations",
            "to replace",
            "change",
            invites=True,
        ),
        Kind(
            "deliver_invitation",
            "deliver link again",
            "undelivered invitation",
            "undelivered invitations",
            "to deliver again",
            "change",
            invites=True,
        ),
        Kind(
            "reseal_invitation",
            "seal link id again",
            "link id sealed the old way",
            "link ids sealed the old way",
            "to seal again",
            "bookkeeping",
        ),
        Kind("adopt_organization", "adopt organization", "organization", "organizations", "to adopt", "bookkeeping"),
        Kind("adopt_team", "adopt team", "team", "teams", "to adopt", "bookkeeping"),
        Kind("adopt_user", "adopt existing account", "user", "users", "to adopt", "bookkeeping"),
        Kind("remove_member", "remove from team", "membership", "memberships", "to remove", "remove", serial=True),
        Kind("delete_user", "delete user", "user", "users", "to delete", "remove", serial=True),
        Kind(
            "remove_org_member",
            "remove from organization",
            "organization membership",
            "organization memberships",
            "to remove",
            "remove",
            serial=True,
        ),
        Kind("delete_team", "delete team", "team", "teams", "to delete", "remove", serial=True),
        Kind(
            "delete_organization",
            "delete organization",
            "organization",
            "organizations",
            "to delete",
            "remove",
            serial=True,
        ),
    )
}

PHASES = tuple(KINDS)
INVITING = frozenset(name for name, kind in KINDS.items() if kind.invites)
BOOKKEEPING = frozenset(name for name, kind in KINDS.items() if kind.effect == "bookkeeping")
REMOVING = frozenset(name for name, kind in KINDS.items() if kind.effect == "remove")
SERIAL = frozenset(name for name, kind in KINDS.items() if kind.serial)
