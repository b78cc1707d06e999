"""Pure: who may do what. Orthanc authenticates (RegisteredUsers); Courier maps the user to a
role and, optionally, to the nodes the user may query and send to.

    viewer    read: status, routes, tasks, jobs, audit, nodes, quarantine list
    operator  + query, echo, create and control their own jobs, batches, try a profile
    admin     + everything: other users' jobs, task retry/cancel, crosswalk, lookup tables
"""
from __future__ import annotations

from typing import Optional

from courier.config.users import ROLES, UserRights


def allows(rights: Optional[UserRights], needed: str) -> bool:
    return rights is not None and ROLES.index(rights.role) >= ROLES.index(needed)


def may_query(rights: UserRights, node: str) -> bool:
    return rights.role == "admin" or rights.may_query is None or node in rights.may_query


def may_send_to(rights: UserRights, destination: str) -> bool:
    return rights.role == "admin" or rights.may_send_to is None or destination in rights.may_send_to
