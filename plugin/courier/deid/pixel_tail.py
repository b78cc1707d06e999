"""Read a DICOM file without its pixel data, and give those bytes back untouched.

The pseudonymizer changes attributes, never pixels. Parsing the 0.5 MB Pixel Data of a CT slice
and writing it out again cost most of the time of a pseudonymized instance, so the file is read
up to its top-level Pixel Data element, and that element's bytes are appended to the rewritten
header as they came (the transfer syntax is kept, so they stay valid).

Only when the Pixel Data element is the last of the file (Data Set Trailing Padding aside, which
is dropped) and the transfer syntax is little endian and not deflated; otherwise the whole file
is read and written as before, so that anything after the pixels is judged by the profile.
"""
from __future__ import annotations

import io
import struct
from typing import Optional, Union

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

PIXEL_TAGS = {b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00"}   # Pixel Data, Float, Double Float
ITEM, SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
PADDING = b"\xfc\xff\xfc\xff"                 # (FFFC,FFFC) Data Set Trailing Padding
UNDEFINED = 0xFFFFFFFF

Parts = Union[tuple[bytes], tuple[bytes, memoryview]]   # a file in pieces that follow each other: its new
                                                        # header, then the Pixel Data as it came (a view)


def joined(parts: Parts) -> bytes:
    """The file the pieces make, as one bytes object (the one piece itself, if that is all)."""
    return parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)


def _element_end(data: bytes, offset: int, implicit: bool) -> Optional[int]:
    """Where the element starting at `offset` ends; None if its header or items do not add up."""
    if implicit:
        if offset + 8 > len(data):
            return None
        length, start = struct.unpack_from("<I", data, offset + 4)[0], offset + 8
    else:
        if offset + 12 > len(data) or data[offset + 4:offset + 6] not in (b"OB", b"OW", b"OF", b"OD", b"UN"):
            return None
        length, start = struct.unpack_from("<I", data, offset + 8)[0], offset + 12
    if length != UNDEFINED:
        return start + length if start + length <= len(data) else None
    position = start                          # encapsulated: items up to the sequence delimiter
    while position + 8 <= len(data):
        tag, item_length = data[position:position + 4], struct.unpack_from("<I", data, position + 4)[0]
        if tag == SEQUENCE_END:
            return position + 8
        if tag != ITEM or item_length == UNDEFINED or position + 8 + item_length > len(data):
            return None
        position += 8 + item_length
    return None


def _padding_only(data: bytes, offset: int, implicit: bool) -> bool:
    """Nothing but Data Set Trailing Padding from `offset` to the end."""
    while offset < len(data):
        if data[offset:offset + 4] != PADDING:
            return False
        end = _element_end(data, offset, implicit)
        if end is None:
            return False
        offset = end
    return True


def read_split(data: bytes) -> tuple[Dataset, Optional[memoryview]]:
    """(the data set without its Pixel Data, the Pixel Data element's bytes), or (the whole data set,
    None) when the pixels cannot be set aside. Raises what dcmread raises on a file it cannot read."""
    handle = io.BytesIO(data)
    header = dcmread(handle, stop_before_pixels=True)
    offset = handle.tell()
    syntax = header.file_meta.get("TransferSyntaxUID") if getattr(header, "file_meta", None) is not None else None
    if (offset >= len(data) or data[offset:offset + 4] not in PIXEL_TAGS or not syntax
            or syntax in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)):
        return dcmread(io.BytesIO(data)), None
    implicit = syntax == ImplicitVRLittleEndian
    end = _element_end(data, offset, implicit)
    if end is None or not _padding_only(data, end, implicit):
        return dcmread(io.BytesIO(data)), None
    return header, memoryview(data)[offset:end]          # no copy until it is joined to the new header
