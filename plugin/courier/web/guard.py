"""Who may call what, applied to a request: the role an endpoint needs, per-node rights, own-job
control, and the CSRF rules for state-changing requests. The rules themselves are pure
(courier.web.access); this module applies them and answers 401/403/415."""
from __future__ import annotations

import hashlib
import hmac
from typing import Mapping, Optional, Union
from urllib.parse import unquote

from courier.config.users import UserRights
from courier.errors import ApiError
from courier.host import HttpRequest
from courier.store.records import Job, Subscription
from courier.web import access
from courier.web.http import PREFIX, Context, actor_of, user_of

FORM_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
INTERNAL_ROUTES = ("traffic/events",)       # role "internal" in the route table: Orthanc's internal calls only


def media_type(request: HttpRequest) -> str:
    """The request's Content-Type without its parameters, lower-case ("" when there is none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def internal_only(uri: str) -> bool:
    """Is this URI (as sent: percent-encoded, doubled or trailing slashes, any case) one of the
    routes only Orthanc's internal calls may reach (INTERNAL_ROUTES: Courier's Lua script posts
    the C-FINDs Orthanc serves to traffic/events)?"""
    parts = [p for p in unquote(unquote(uri)).split("/") if p]
    return "/".join(parts).lower() in {PREFIX.strip("/") + "/" + route for route in INTERNAL_ROUTES}


def refused_unread(method: str, uri: str, headers: Mapping[str, str]) -> bool:
    """For Orthanc's incoming-HTTP filter (courier.host.Host.filter_requests), on every request
    under /courier/, before Orthanc reads the body: a route only Orthanc's internal calls may use
    (internal_only: the filter never sees those), and a multipart/form-data POST. Orthanc 1.10.1
    would not give it to Courier: it splits it into parts, hands each part to Courier as a POST of
    its own, with the part's Content-Type (a part typed application/json gets past the CSRF rule
    below, and is acted on), throws Courier's answers away and tells the sender 200. Refused
    here, the sender gets 403 Forbidden with an empty body (a filter can only allow or forbid)."""
    if internal_only(uri):
        return True
    return method == "POST" and headers.get("content-type", "")[:19].lower() == "multipart/form-data"


def rights_of(ctx: Context, request: HttpRequest) -> Optional[UserRights]:
    return ctx.config.access.rights(user_of(request))


def csrf_token(ctx: Context, user: str) -> str:
    return hmac.new(ctx.csrf_secret, user.encode(), hashlib.sha256).hexdigest()


def authorize(ctx: Context, request: HttpRequest, method: str, pattern: str, role: str) -> None:
    rights = rights_of(ctx, request)
    if rights is None:
        raise ApiError(401, "authentication required")
    if method != "GET":
        # A cross-site <form> can only send these content types (no CORS preflight), with the
        # browser's cached Basic credentials: refusing them is the CSRF protection.
        token = request.headers.get("x-courier-csrf")
        if token is not None and not hmac.compare_digest(token, csrf_token(ctx, actor_of(request))):
            raise ApiError(403, "the CSRF token does not belong to this user; reload the page")
        if method == "POST" and media_type(request) in FORM_TYPES:    # a <form> cannot send DELETE
            raise ApiError(415, f"{method} /courier/{pattern} needs a Content-Type such as "
                                "application/json (form content types are refused against cross-site requests)")
    if not access.allows(rights, role):
        raise ApiError(403, f"{method} /courier/{pattern} needs the {role} role; {actor_of(request)} is {rights.role}")


def check_nodes(ctx: Context, request: HttpRequest, query: Optional[str] = None, send_to: Optional[str] = None) -> None:
    rights = rights_of(ctx, request)
    actor = actor_of(request)
    if query and not access.may_query(rights, query):
        raise ApiError(403, f"{actor} may not query {query!r} (Courier.Users.{actor}.MayQuery)")
    if send_to and not access.may_send_to(rights, send_to):
        raise ApiError(403, f"{actor} may not send to {send_to!r} (Courier.Users.{actor}.MaySendTo)")


def check_owner(ctx: Context, request: HttpRequest, owned: Union[Job, Subscription], what: str = "job") -> None:
    """Only the user who made a job (or a subscription), or an admin, may change it."""
    if rights_of(ctx, request).role != "admin" and owned.created_by != actor_of(request):
        raise ApiError(403, f"{what} {owned.id} belongs to {owned.created_by}; only its owner or an admin may change it")
