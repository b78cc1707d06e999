"""Pure: what Courier's C-STORE filter refuses before Orthanc stores an instance.

- a calling AE that DicomModalities does not declare (routing.callers, with KnownModalities);
- an instance whose sequences nest deeper than MAX_DEPTH: Orthanc 1.10.1 runs its REST handlers on
  100 KiB stacks and crashes (segfault) when it renders such an instance as JSON (`/tags`,
  `/simplified-tags`, measured at 50 levels); stored, it would stop the router each time Courier
  read its tags, again after every restart. Real objects nest a few levels (SR trees rarely 10).

The depth is read from the element headers alone, without recursion and without reading values
(pixel data is skipped by its length), so the check costs a scan of the headers on Orthanc's
DICOM thread.
"""
from __future__ import annotations

import struct
from typing import Callable, Optional

from pydicom.datadict import dictionary_VR

from courier.config.sop_classes import sop_class_name
from courier.routing.callers import CallerPolicy

MAX_DEPTH = 16
REFUSED_NOT_AUTHORIZED = 0x0124
REFUSED_CANNOT_UNDERSTAND = 0xC000
REFUSED_SOP_CLASS = 0x0122            # Refused: SOP Class not supported

ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"


def _transfer_syntax(data: bytes) -> tuple[Optional[str], int]:
    """(transfer syntax UID, offset of the data set) of a Part 10 file; (None, 0) without a preamble."""
    meta, offset = file_meta(data)
    return meta.get(0x0010), offset


def file_meta(data: bytes) -> tuple[dict[int, str], int]:
    """The text elements of a Part 10 file's meta group by element number (0x0002: the SOP class,
    0x0010: the transfer syntax) and the offset of the data set; ({}, 0) without a preamble."""
    if data[128:132] != b"DICM":
        return {}, 0
    offset, meta = 132, {}
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            break
        vr = data[offset + 4:offset + 6]
        if vr in LONG_VRS:
            length, header = struct.unpack_from("<I", data, offset + 8)[0], 12
        else:
            length, header = struct.unpack_from("<H", data, offset + 6)[0], 8
        if vr == b"UI":
            meta[element] = data[offset + header:offset + header + length].rstrip(b"\x00 ").decode("ascii", "replace")
        offset += header + length
    return meta, offset


def nesting_depth(data: bytes, limit: int = 10_000) -> int:
    """How deep the sequences of a DICOM file nest (0: no sequence), counting from its headers;
    stops counting past `limit`. A file too damaged to walk counts as what was walked."""
    # No scan of the whole file first (for an item tag, say): the walk below skips every value,
    # pixel data included, by its length, and costs less than reading 0.5 MB (measured).
    syntax, offset = _transfer_syntax(data)
    if syntax and syntax.startswith("1.2.840.10008.1.2.1.99"):
        return 0                                   # deflated: Orthanc inflates it, the headers are not readable here
    explicit = syntax != IMPLICIT_LE if syntax else data[offset + 4:offset + 6].isalpha()
    endian = ">" if syntax == EXPLICIT_BE else "<"
    ends: list[int] = []                           # end offsets of open defined-length items and sequences
    depth = deepest = 0
    size = len(data)
    while offset + 8 <= size and deepest <= limit:
        while ends and offset >= ends[-1]:         # leave what ended by length
            ends.pop()
            depth -= 1
        group, element = struct.unpack_from(endian + "HH", data, offset)
        tag = group << 16 | element
        if tag in (ITEM, ITEM_END, SEQUENCE_END):  # item headers are always implicit: tag + 4-byte length
            length = struct.unpack_from(endian + "I", data, offset + 4)[0]
            offset += 8
            if tag == ITEM and length != UNDEFINED:
                ends.append(offset + length)
            if tag in (ITEM_END, SEQUENCE_END):
                depth -= 1
            else:
                depth += 1
            deepest = max(deepest, (depth + 1) // 2)
            continue
        if explicit:
            vr = data[offset + 4:offset + 6]
            if vr in LONG_VRS:
                if offset + 12 > size:
                    break
                length, header = struct.unpack_from(endian + "I", data, offset + 8)[0], 12
            else:
                length, header = struct.unpack_from(endian + "H", data, offset + 6)[0], 8
            is_sequence = vr == b"SQ" or (vr == b"UN" and length == UNDEFINED)
        else:
            length, header = struct.unpack_from(endian + "I", data, offset + 4)[0], 8
            try:
                is_sequence = length == UNDEFINED or dictionary_VR(tag) == "SQ"
            except KeyError:
                is_sequence = False
        offset += header
        if is_sequence:                            # enter it: its items are read as elements
            depth += 1
            if length != UNDEFINED:
                ends.append(offset + length)
            deepest = max(deepest, (depth + 1) // 2)
        elif length != UNDEFINED:
            offset += length                       # any value, pixel data included, is skipped
        else:
            break                                  # encapsulated pixel data (undefined length): nothing nests after it
    return deepest


class Admission:
    def __init__(self, callers: CallerPolicy, max_depth: int = MAX_DEPTH,
                 accepted_sop_classes: Optional[frozenset] = None) -> None:
        self.callers, self.max_depth, self.accepted = callers, max_depth, accepted_sop_classes

    def refuse(self, calling_aet: str, data: Callable[[], bytes]) -> Optional[tuple[int, str]]:
        """(DIMSE status, reason) to refuse a C-STORE, or None to let Orthanc store it."""
        reason = self.callers.refuse_aet(calling_aet)
        if reason is not None:
            return REFUSED_NOT_AUTHORIZED, reason
        content = data()
        if self.accepted is not None:
            sop_class = file_meta(content)[0].get(0x0002, "")
            if sop_class not in self.accepted:
                name = sop_class_name(sop_class) or "(none)"
                return REFUSED_SOP_CLASS, f"SOP class {name} is not in Courier.AcceptedSopClasses"
        depth = nesting_depth(content, limit=self.max_depth + 1)
        if depth > self.max_depth:
            return REFUSED_CANNOT_UNDERSTAND, (f"sequences nested {depth} deep or more (at most {self.max_depth}): "
                                               "Orthanc 1.10.1 crashes rendering such an instance")
        return None
