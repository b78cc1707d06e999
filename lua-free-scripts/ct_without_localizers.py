"""Route condition: CT images, but not scouts/localizers.

In Orthanc's Lua this was an OnStoredInstance() with string.find() on ImageType and
SeriesDescription. Use it in a route with "Condition": "ct_without_localizers.py".
"""
from typing import Any, Mapping


def match(tags: Mapping[str, Any], context: Any) -> bool:
    if tags.get("Modality") != "CT":
        return False
    image_type = str(tags.get("ImageType") or "").upper().split("\\")
    description = str(tags.get("SeriesDescription") or "").lower()
    return "LOCALIZER" not in image_type and not any(word in description for word in ("scout", "topogram", "localizer"))
