"""One sender per destination, by kind: DICOM, DICOMweb and peers (orthanc_senders), folders
(folder), encrypted 7-Zip archives (archive), S3-compatible buckets (bucket)."""
from __future__ import annotations

from typing import Mapping

from courier.config.destinations import Archive, Bucket, Folder
from courier.config.nodes import Node
from courier.delivery import dcmtk_store
from courier.delivery.archive import ArchiveSender
from courier.delivery.bucket import BucketSender
from courier.delivery.folder import FolderSender
from courier.delivery.orthanc_senders import OrthancRouteSender
from courier.delivery.sender import Sender
from courier.orthanc_rest import OrthancRest


def build_senders(rest: OrthancRest, destinations: Mapping[str, str], folders: Mapping[str, Folder],
                  nodes: Mapping[str, Node], local_aet: str, timeout: float,
                  archives: Mapping[str, Archive] = {}, buckets: Mapping[str, Bucket] = {}) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    dcmtk_store.remove_leftovers()
    for node_id, kind in destinations.items():
        if kind == "folder":
            senders[node_id] = FolderSender(rest, folders[node_id])
        elif kind == "archive":
            senders[node_id] = ArchiveSender(archives[node_id])
        elif kind == "bucket":
            senders[node_id] = BucketSender(rest, buckets[node_id], timeout)
        else:
            senders[node_id] = OrthancRouteSender(rest, nodes[node_id], local_aet, timeout)
    return senders
