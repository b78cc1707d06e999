"""Pure: who may do what. Orthanc authenticates (RegisteredUsers); Courier maps the user to a
role and, optionally, to the nodes the user may query and send to.

    viewer    read: status, routes, tasks, jobs, audit, nodes, quarantine list
    operator  + query, echo, create and control their own jobs, batches, try a profile
    admin     + everything: other users' jobs, task retry/cancel, crosswalk, lookup tables
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class UserRights:
    role: str
    may_query: Optional[frozenset] = None      # node ids; None: every node
    may_send_to: Optional[frozenset] = None    # destination ids; None: every destination


@dataclass(frozen=True)
class AccessPolicy:
    users: Mapping[str, UserRights]
    default_role: str = "viewer"               # an Orthanc user Courier.Users does not list
    anonymous_role: str = "admin"              # only when Orthanc's authentication is off
    authentication: bool = True

    def rights(self, user: Optional[str]) -> Optional[UserRights]:
        """None: no access at all (authentication is on and nobody is logged in)."""
        if user is None:
            return None if self.authentication else UserRights(self.anonymous_role)
        return self.users.get(user, UserRights(self.default_role))


def allows(rights: Optional[UserRights], needed: str) -> bool:
    return rights is not None and ROLES.index(rights.role) >= ROLES.index(needed)


def may_query(rights: UserRights, node: str) -> bool:
    return rights.role == "admin" or rights.may_query is None or node in rights.may_query


def may_send_to(rights: UserRights, destination: str) -> bool:
    return rights.role == "admin" or rights.may_send_to is None or destination in rights.may_send_to
