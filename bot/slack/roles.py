"""Who may do what from Slack: two roles, each a list of users and Slack user groups.

* **Operators** (``SLACK_ALLOWED_USERS``; empty: everyone) may run-now, pause, resume, skip and
  unskip.
* **Schedulers** (``SLACK_SCHEDULERS``; empty: the operators) may set and reset a schedule
  (preview and Apply).
* Everyone may read.

A list holds user IDs (``U…``, ``W…``) and user group IDs (``S…``). A group's members are read
with ``usergroups.users.list`` (scope ``usergroups:read``) and kept at most ``TTL_S`` seconds, or
until Slack says the group changed (``subteam_members_changed``: :meth:`Roles.forget`). A group
that cannot be read (a missing scope, an unknown group, Slack unreachable) refuses — a right is
never granted on a guess — and says why, in the refusal and in one log line a minute per group.

The role is checked wherever a change can come in: a command, a button, a modal's submission,
whatever the payload claims (a forged one included): the user is the one Slack's payload names,
and the check is made against the lists here, never against what a button carries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

Role = Literal["operator", "scheduler"]
TTL_S = 300.0  # SPEC: members are kept at most 5 minutes
LOG_EVERY_S = 60.0
# Which role each changing verb needs.
NEEDS: dict[str, Role] = {"run-now": "operator", "pause": "operator", "resume": "operator", "skip": "operator",
                          "unskip": "operator", "schedule-set": "scheduler", "schedule-reset": "scheduler"}

GroupReader = Callable[[str], Awaitable[Any]]  # usergroups.users.list(usergroup=…): its answer


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str = ""  # for a refusal: what the user is told (the role needed, or the group that could not be read)


class Roles:
    def __init__(self, operators: frozenset[str], schedulers: frozenset[str], read_group: GroupReader,
                 *, ttl_s: float = TTL_S) -> None:
        self._lists: dict[Role, frozenset[str]] = {"operator": operators, "scheduler": schedulers or operators}
        self._variables: dict[Role, str] = {
            "operator": "SLACK_ALLOWED_USERS", "scheduler": "SLACK_SCHEDULERS" if schedulers else "SLACK_ALLOWED_USERS"}
        self._read_group = read_group
        self._ttl = ttl_s
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._logged: dict[str, float] = {}

    def decided_at_once(self, user: str, role: Role) -> Verdict | None:
        """The verdict when no user group needs reading (None: one does)."""
        listed = self._lists[role]
        if not listed or user in listed:
            return Verdict(True)
        if not any(entry.startswith("S") for entry in listed):
            return self._refusal(user, role)
        return None

    async def check(self, user: str, role: Role) -> Verdict:
        """Whether ``user`` has ``role``, reading user groups when needed."""
        if (verdict := self.decided_at_once(user, role)) is not None:
            return verdict
        unreadable: list[str] = []
        for group in sorted(entry for entry in self._lists[role] if entry.startswith("S")):
            try:
                members = await self._group(group)
            except GroupUnreadable as exc:
                unreadable.append(f"the user group {group} cannot be read ({exc})")
                continue
            if user in members:
                return Verdict(True)
        if unreadable:
            return Verdict(False, f"{self._refusal(user, role).why} And {'; '.join(unreadable)}: ask an admin "
                                  "to check the app's `usergroups:read` scope and the group's ID.")
        return self._refusal(user, role)

    def forget(self, group: str | None = None) -> None:
        """Read a group's members again next time (Slack said they changed); None: every group."""
        if group is None:
            self._members.clear()
        else:
            self._members.pop(group, None)

    async def _group(self, group: str) -> frozenset[str]:
        kept = self._members.get(group)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self._ttl:
            return kept[1]
        try:
            answer = await self._read_group(group)
        except Exception as exc:  # Slack refused, or is unreachable: the reason is told
            error = _error_of(exc)
            if now - self._logged.get(group, -LOG_EVERY_S) >= LOG_EVERY_S:
                self._logged[group] = now
                log.warning("the members of Slack user group %s cannot be read (%s): its members are refused until "
                            "it can be", group, error)
            raise GroupUnreadable(error) from None
        members = frozenset(str(user) for user in (answer.get("users") or []))
        self._members[group] = (now, members)
        return members

    def _refusal(self, user: str, role: Role) -> Verdict:
        what = "run, pause, resume or skip" if role == "operator" else "change the schedule of"
        return Verdict(False, f"Sorry <@{user}>, only *{role}s* may {what} foojob's jobs (`{self._variables[role]}`: "
                              f"ask an admin to add your user ID `{user}` or a user group of yours). "
                              "Nothing was changed.")


class GroupUnreadable(Exception):
    """A user group whose members Slack would not give."""


def _error_of(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return str(response.get("error") or type(exc).__name__)
        except AttributeError:
            pass
    return type(exc).__name__
