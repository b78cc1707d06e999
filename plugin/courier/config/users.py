"""Roles and per-node rights of REST users ("Courier.Users", DefaultRole, AnonymousRole).

Orthanc authenticates (RegisteredUsers); Courier maps the user to a role and, optionally, to the
nodes the user may query and send to. What each role may do is decided in courier.web.access.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from courier.config.nodes import Node
from courier.config.reader import Section
from courier.errors import ConfigError

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


def parse_users(section: Section, orthanc: Mapping[str, Any], nodes: Mapping[str, Node],
                destinations: Mapping[str, str]) -> AccessPolicy:
    raw = section.get("Users", dict, {})
    registered = orthanc.get("RegisteredUsers") or {}
    users = {}
    for name, spec in raw.items():
        path = f"Courier.Users.{name}"
        if name not in registered:
            raise ConfigError(path, "not a user of Orthanc's RegisteredUsers", "Orthanc authenticates; Courier gives roles")
        user = Section(spec, path, "Courier.Users.{name}")
        role = user.get("Role", str)
        if role not in ROLES:
            raise ConfigError(f"{path}.Role", f"unknown role {role!r}", f"one of {', '.join(ROLES)}")
        lists = {}
        for key, known in (("MayQuery", nodes), ("MaySendTo", destinations)):
            value = user.get(key, list, None)
            if value is not None:
                for index, item in enumerate(value):
                    if item not in known:
                        raise ConfigError(f"{path}.{key}[{index}]", f"no node or destination named {item!r}")
                value = frozenset(value)
            lists[key] = value
        users[name] = UserRights(role, lists["MayQuery"], lists["MaySendTo"])
    roles = {}
    for key, default in (("DefaultRole", "viewer"), ("AnonymousRole", "admin")):
        roles[key] = section.get(key, str, default)
        if roles[key] not in ROLES:
            raise ConfigError(f"Courier.{key}", f"unknown role {roles[key]!r}", f"one of {', '.join(ROLES)}")
    return AccessPolicy(users, roles["DefaultRole"], roles["AnonymousRole"],
                        authentication=bool(orthanc.get("AuthenticationEnabled", orthanc.get("RemoteAccessAllowed", False))))
