"""What routes are evaluated on: the tags of a resource (its first instance's, for a series or a
study, read from Orthanc) plus the context keys CallingAet, CalledAet and RemoteIp from the
instance's metadata; only what the routes use is read (a pass-through route reads nothing)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from courier.config.match import CONTEXT_KEYS
from courier.config.routes import Route
from courier.orthanc_rest import OrthancHttpError, OrthancRest

LEVEL_PATHS = {"Series": "series", "Study": "studies"}


class ResourceTags:
    def __init__(self, rest: OrthancRest, routes: Sequence[Route]) -> None:
        self.rest = rest
        # An Ingest route needs the tags to check Courier's mark: for a series or a study here; for
        # an instance the follower reads them only for what its gate did not make (follower._ingested).
        self.ingest = any(r.pseudonymize_on == "Ingest" for r in routes)
        self.needs_tags = any(
            route.condition_script or any(key not in CONTEXT_KEYS for key, _ in route.match) for route in routes)
        self.needs_context = any(route.condition_script or route.allowed_calling_aets is not None
                                 or any(key in CONTEXT_KEYS for key, _ in route.match) for route in routes)

    def of(self, level: str, resource_id: str, metadata: Optional[dict] = None) -> dict[str, Any]:
        """OrthancHttpError 404 if the resource is gone (or has no instance left)."""
        needs_tags = self.needs_tags or (self.ingest and level != "Instance")
        if not (needs_tags or self.needs_context):
            return {}
        if level == "Instance":
            instance_id = resource_id
        else:
            instances = self.rest.get_json(f"/{LEVEL_PATHS[level]}/{resource_id}/instances")
            if not instances:
                raise OrthancHttpError(404, f"{level} {resource_id} has no instances")
            instance_id = instances[0]["ID"]
        tags = self.instance_tags(instance_id) if needs_tags else {}
        if metadata is None:
            metadata = self.rest.get_json(f"/instances/{instance_id}/metadata", expand="")
        tags.update(CallingAet=metadata.get("RemoteAET", ""), CalledAet=metadata.get("CalledAET", ""),
                    RemoteIp=metadata.get("RemoteIP", ""))
        return tags

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return dict(self.rest.get_json(f"/instances/{instance_id}/simplified-tags"))
