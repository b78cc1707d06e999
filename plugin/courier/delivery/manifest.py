"""What a routed task must deliver: the SOP Instance UIDs (and sizes) of its resource, read from
Orthanc's index when the task is first claimed."""
from __future__ import annotations

from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem

LEVEL_PATHS = {"Instance": "instances", "Series": "series", "Study": "studies"}


def instance_manifest(rest: OrthancRest, level: str, resource_id: str) -> list[ManifestItem]:
    if level == "Instance":
        info = rest.get_json(f"/instances/{resource_id}")
        return [ManifestItem(resource_id, info["MainDicomTags"].get("SOPInstanceUID", ""), info.get("FileSize", 0))]
    children = rest.get_json(f"/{LEVEL_PATHS[level]}/{resource_id}/instances")
    return [ManifestItem(c["ID"], c["MainDicomTags"].get("SOPInstanceUID", ""), c.get("FileSize", 0)) for c in children]
