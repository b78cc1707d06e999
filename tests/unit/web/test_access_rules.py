import copy

import pytest

from courier.config.parse import parse
from courier.config.users import AccessPolicy, UserRights
from courier.errors import ConfigError
from courier.web.access import allows, may_query, may_send_to

BASE = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "a", "bob": "b"},
        "DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104], "dest": ["DEST", "127.0.0.1", 105]}}


def test_roles_are_ordered():
    assert allows(UserRights("admin"), "operator") and allows(UserRights("operator"), "viewer")
    assert not allows(UserRights("viewer"), "operator") and not allows(None, "viewer")


def test_node_rights():
    bob = UserRights("operator", frozenset({"pacs"}), frozenset({"dest"}))
    assert may_query(bob, "pacs") and not may_query(bob, "other")
    assert may_send_to(bob, "dest") and not may_send_to(bob, "other")
    assert may_query(UserRights("admin", frozenset()), "anything")


def test_unlisted_users_anonymous_and_authentication():
    policy = AccessPolicy({"alice": UserRights("admin")}, default_role="viewer", anonymous_role="admin")
    assert policy.rights("alice").role == "admin" and policy.rights("zed").role == "viewer"
    assert policy.rights(None) is None
    assert AccessPolicy({}, authentication=False).rights(None).role == "admin"


def test_users_configuration():
    config = dict(copy.deepcopy(BASE), Courier={"Users": {"bob": {"Role": "operator", "MayQuery": ["pacs"]}}})
    access = parse(config, "/", "/").access
    assert access.rights("bob") == UserRights("operator", frozenset({"pacs"}), None)
    assert access.authentication is True
    assert parse({"RemoteAccessAllowed": False}, "/", "/").access.authentication is False


@pytest.mark.parametrize("users,path,words", [
    ({"zed": {"Role": "admin"}}, "Courier.Users.zed", "not a user of Orthanc's RegisteredUsers"),
    ({"bob": {"Role": "boss"}}, "Courier.Users.bob.Role", "unknown role"),
    ({"bob": {"Role": "operator", "MaySendTo": ["nowhere"]}}, "Courier.Users.bob.MaySendTo[0]", "no node or destination"),
])
def test_user_errors(users, path, words):
    with pytest.raises(ConfigError) as caught:
        parse(dict(copy.deepcopy(BASE), Courier={"Users": users}), "/", "/")
    assert str(caught.value).startswith(f"Courier configuration error at {path}:") and words in str(caught.value)
