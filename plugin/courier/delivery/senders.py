"""One sender per destination, by kind: DICOM, DICOMweb and peers (orthanc_senders), folders
(folder), encrypted 7-Zip archives (archive), S3-compatible buckets (bucket)."""
from __future__ import annotations

from typing import Mapping, Optional

from courier.config.destinations import Archive, Bucket, Folder
from courier.config.nodes import Node
from courier.delivery import dcmtk_store
from courier.delivery.archive import ArchiveSender
from courier.delivery.bucket import BucketSender
from courier.delivery.folder import FolderSender
from courier.delivery.nifti import NiftiSender
from courier.delivery.orthanc_senders import OrthancRouteSender
from courier.delivery.sender import Sender
from courier.orthanc_rest import OrthancRest
from courier.tokens import Tokens


def build_senders(rest: OrthancRest, destinations: Mapping[str, str], folders: Mapping[str, Folder],
                  nodes: Mapping[str, Node], local_aet: str, timeout: float,
                  archives: Mapping[str, Archive] = {}, tokens: Optional[Tokens] = None,
                  buckets: Mapping[str, Bucket] = {}) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    dcmtk_store.remove_leftovers()
    for node_id, kind in destinations.items():
        if kind == "folder":
            folder = folders[node_id]
            senders[node_id] = NiftiSender(folder) if folder.convert == "NIfTI" else FolderSender(rest, folder)
        elif kind == "archive":
            senders[node_id] = ArchiveSender(archives[node_id])
        elif kind == "bucket":
            senders[node_id] = BucketSender(rest, buckets[node_id], timeout)
        else:
            senders[node_id] = OrthancRouteSender(rest, nodes[node_id], local_aet, timeout, tokens)
    return senders
