"""What a routed task must deliver: the SOP Instance UIDs (and sizes) of its resource, read from
Orthanc's index when the task is first claimed (the change follower writes an Instance task's manifest
with the task: it has read it already). Instance tasks of one claim are listed with one
POST /tools/bulk-content (unknown IDs are left out of its answer), not one call each."""
from __future__ import annotations

from typing import Sequence, Union

from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.store.records import ManifestItem, Task

LEVEL_PATHS = {"Instance": "instances", "Series": "series", "Study": "studies"}
BULK = 1000                  # instances per bulk-content call


def instance_manifest(rest: OrthancRest, level: str, resource_id: str) -> list[ManifestItem]:
    if level == "Instance":
        return [ManifestItem.of_instance({**rest.get_json(f"/instances/{resource_id}"), "ID": resource_id})]
    children = rest.get_json(f"/{LEVEL_PATHS[level]}/{resource_id}/instances")
    return [ManifestItem.of_instance(c) for c in children]


def manifests_of(rest: OrthancRest, tasks: Sequence[Task]) -> dict[int, Union[list[ManifestItem], DeliveryError]]:
    """Each task's manifest, or the error that kept it from being listed."""
    found: dict[int, Union[list[ManifestItem], DeliveryError]] = {}
    instances = [t for t in tasks if t.level == "Instance"]
    for start in range(0, len(instances), BULK):
        part = instances[start:start + BULK]
        try:
            answer = rest.post_json("/tools/bulk-content", {"Resources": [t.resource_id for t in part],
                                                            "Level": "Instance"})
        except DeliveryError as exc:
            found.update({t.id: exc for t in part})
            continue
        infos = {info["ID"]: info for info in answer or []}
        for task in part:
            info = infos.get(task.resource_id)
            found[task.id] = [ManifestItem.of_instance(info)] if info else OrthancHttpError(
                404, f"instance {task.resource_id} is no longer in Orthanc")
    for task in tasks:
        if task.level != "Instance":
            try:
                found[task.id] = instance_manifest(rest, task.level, task.resource_id)
            except DeliveryError as exc:
                found[task.id] = exc
    return found
