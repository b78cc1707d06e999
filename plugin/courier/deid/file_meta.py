"""The File Meta Information and preamble of a de-identified instance (PS3.15 E.1.1 item 7: "the
File Meta Information ... including the 128 byte preamble ... shall be replaced with a description
of the de-identifying application", PS3.10 7.1).

Nothing of the received header is carried over but how the data set is encoded: the preamble is
128 zero bytes; the new meta names Courier (its implementation class UID and version name, and
Courier's AE title as the source), the instance's own SOP Class and (new) SOP Instance UID, and
the transfer syntax. The sending and receiving AE titles, the source presentation address and
the private information of the received header (group 0002) are not written again.
"""
from __future__ import annotations

import io
import struct
from typing import Optional

from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.tag import tag_in_exception
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from courier import VERSION

PREAMBLE = b"\x00" * 128
IMPLEMENTATION_CLASS_UID = "2.25.239413420448554990668186960894043842147"   # Courier's, made once from a UUID
IMPLEMENTATION_VERSION_NAME = f"COURIER_{VERSION}"[:16]
DEFAULT_AE = "COURIER"


def check_ae_title(title: str) -> str:
    """`title` if it is a valid AE title (1 to 16 characters, no backslash or control character,
    not only spaces); ValueError saying what is wrong otherwise."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"AE title {title!r}: empty")
    if len(title) > 16:
        raise ValueError(f"AE title {title!r}: longer than 16 characters")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        raise ValueError(f"AE title {title!r}: only printable ASCII without a backslash")
    return title.strip()


def transfer_syntax(ds: Dataset, received: Optional[Dataset]) -> str:
    """The received transfer syntax; for a data set read without one, the encoding it was read in."""
    uid = received.get("TransferSyntaxUID") if received is not None else None
    if uid:
        return str(uid)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        return ImplicitVRLittleEndian
    if implicit is False and little is False:
        return ExplicitVRBigEndian
    return ExplicitVRLittleEndian


def new_file_meta(ds: Dataset, received: Optional[Dataset], source_ae: str = DEFAULT_AE) -> FileMetaDataset:
    """The File Meta Information describing Courier for the de-identified `ds` (its SOP Instance
    UID already remapped); `received` is the header it came with (None if it had none)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    sop_class = ds.get("SOPClassUID") or (received.get("MediaStorageSOPClassUID") if received is not None else None)
    if sop_class:
        meta.MediaStorageSOPClassUID = str(sop_class)
    if ds.get("SOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = str(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = transfer_syntax(ds, received)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    meta.SourceApplicationEntityTitle = source_ae
    return meta


def received_ae_titles(received: Optional[Dataset]) -> list[str]:
    """The AE titles of the received header (source, sending, receiving): values the new header
    removes, to be cut from text like any other removed value."""
    if received is None:
        return []
    return [str(received.get(k)) for k in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                                           "ReceivingApplicationEntityTitle") if received.get(k)]


META = ((0x0001, "OB", "FileMetaInformationVersion"), (0x0002, "UI", "MediaStorageSOPClassUID"),
        (0x0003, "UI", "MediaStorageSOPInstanceUID"), (0x0010, "UI", "TransferSyntaxUID"),
        (0x0012, "UI", "ImplementationClassUID"), (0x0013, "SH", "ImplementationVersionName"),
        (0x0016, "AE", "SourceApplicationEntityTitle"))
KNOWN_META = {0x0000} | {element for element, _, _ in META}


def meta_bytes(meta: Dataset) -> bytes:
    """Group 0002 as new_file_meta makes it, encoded (explicit VR little endian, its group length
    first). Byte for byte what pydicom's write_file_meta_info writes, at a seventh of its cost:
    eight short ASCII elements Courier made itself need no general writer."""
    body = []
    for element, vr, keyword in META:
        value = meta.get(keyword)
        if value is None:
            continue
        data = bytes(value) if vr == "OB" else str(value).encode("ascii")
        if len(data) % 2:
            data += b"\x00" if vr in ("UI", "OB") else b" "
        if vr == "OB":
            body.append(struct.pack("<HH2sHI", 2, element, b"OB", 0, len(data)) + data)
        else:
            body.append(struct.pack("<HH2sH", 2, element, vr.encode(), len(data)) + data)
    rest = b"".join(body)
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(rest)) + rest


def write_file(ds: Dataset) -> bytes:
    """`ds` (with the file_meta and preamble new_file_meta gave it) as a DICOM file, in its
    transfer syntax. pydicom's writers without dcmwrite's copy and checks of the File Meta
    Information, which Courier has just made itself (a quarter of the write, measured)."""
    meta = ds.file_meta
    syntax = UID(meta.TransferSyntaxUID)
    if syntax.is_deflated or not syntax.is_transfer_syntax:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    fp = DicomBytesIO()
    fp.write(ds.preamble or PREAMBLE)
    fp.write(b"DICM")
    if {int(tag) & 0xFFFF for tag in meta.keys()} <= KNOWN_META:
        fp.write(meta_bytes(meta))
    else:                                          # something else was added: pydicom's general writer
        write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_implicit_VR, fp.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
    write_data_set(fp, ds)
    return fp.getvalue()


UNDEFINED_LENGTH = 0xFFFFFFFF
LONG_LENGTH_VRS = frozenset(EXPLICIT_VR_LENGTH_32)
# VRs pydicom writes from a str in its default encoding, whatever the character set (write_string,
# write_UI, and write_DA/DT/TM given a str): what the pseudonymizer sets (UIDs, shifted dates, dummies).
ASCII_VRS = {"AE": b" ", "AS": b" ", "CS": b" ", "DA": b" ", "DT": b" ", "TM": b" ", "UI": b"\x00"}
# Text VRs pydicom encodes in the data set's character set (write_text): ASCII text is ASCII in these.
CHARSET_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
ASCII_CHARACTER_SETS = frozenset({default_encoding, "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})


def write_data_set(fp: DicomBytesIO, ds: Dataset) -> None:
    """Byte for byte what pydicom's write_dataset writes (`fp` says the encoding), faster for the
    elements still undecoded as they were read (most of a pseudonymized header: what the profile
    keeps as it is): their header is packed here and their value written as it came, where pydicom
    makes a buffer and looks up its writer for each. So are an empty value, a str of an ASCII VR
    (a remapped UID, a shifted date) and ASCII text in a character set that writes it as ASCII.
    Anything else is pydicom's to write: another decoded
    element, one of undefined length, a value too long for its explicit VR's 16-bit length, and the
    whole data set when pydicom would convert it (another encoding or character set than it was
    read in)."""
    implicit, little = fp.is_implicit_VR, fp.is_little_endian
    if (implicit, little) != tuple(ds.original_encoding) or ds.original_character_set != getattr(ds, "_character_set", None):
        write_dataset(fp, ds)
        return
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    ascii_text = isinstance(encodings, str) and encodings in ASCII_CHARACTER_SETS
    order = "<" if little else ">"
    short, long_, plain = struct.Struct(order + "HH2sH"), struct.Struct(order + "HH2sHI"), struct.Struct(order + "HHI")
    write = fp.write
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:         # retired group lengths: never written (PS3.5 7.2)
            continue
        elem = ds.get_item(tag)
        value = elem.value if elem.is_raw and elem.length != UNDEFINED_LENGTH else None
        if value is None and not elem.is_raw and elem.VR != "SQ" and not elem.is_undefined_length:
            value = b"" if elem.is_empty else _encoded(elem.VR, elem.value, ascii_text)   # no empty value is written
        if isinstance(value, bytes):
            size, group, element, vr = len(value), tag >> 16, tag & 0xFFFF, elem.VR
            if implicit:
                header: Optional[bytes] = plain.pack(group, element, size)
            elif vr in LONG_LENGTH_VRS:
                header = long_.pack(group, element, vr.encode("ascii"), 0, size)
            elif vr is not None and len(vr) == 2 and size <= 0xFFFF:
                header = short.pack(group, element, vr.encode("ascii"), size)
            else:
                header = None                      # pydicom's case: a VR to change or to refuse
            if header is not None:
                write(header)
                write(value)
                continue
        with tag_in_exception(tag):
            write_data_element(fp, elem, encodings)


def _encoded(vr: str, value: object, ascii_text: bool) -> Optional[bytes]:
    """The bytes pydicom writes for a decoded element's (non-empty) value when they are plain: a str
    of an ASCII VR in pydicom's default encoding, or ASCII text when the character set (`ascii_text`)
    writes it as ASCII, padded to an even length; None for anything else (pydicom's to write)."""
    if not isinstance(value, str):
        return None
    pad = ASCII_VRS.get(vr)
    if pad is None and ascii_text and vr in CHARSET_TEXT_VRS and value.isascii():
        pad = b" "
    if pad is None:
        return None
    data = value.encode(default_encoding)
    return data + pad if len(data) % 2 else data
