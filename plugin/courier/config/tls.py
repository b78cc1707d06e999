"""Orthanc's DICOM TLS settings (DicomTlsCertificate, DicomTlsPrivateKey, DicomTlsTrustedCertificates,
DicomTlsRemoteCertificateRequired, DicomTlsMinimumProtocolVersion), for the associations Courier
opens itself (pynetdicom C-FIND, C-MOVE, C-GET) with nodes that have UseDicomTls: as Orthanc's
own SCU, Courier presents Orthanc's certificate and accepts the node only if its certificate is
among the trusted ones (no host name check, as DCMTK)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from courier.config.reader import resolve, type_name
from courier.errors import ConfigError

KEYS = ("DicomTlsCertificate", "DicomTlsPrivateKey", "DicomTlsTrustedCertificates")


@dataclass(frozen=True)
class DicomTls:
    certificate: str
    private_key: str
    trusted: str
    remote_certificate_required: bool = True   # for Orthanc's SCP; a server always presents one to Courier
    minimum_version: int = 0          # Orthanc's: 0 default, 1 SSLv3, 2 TLS 1.0, 3 TLS 1.1, 4 TLS 1.2, 5 TLS 1.3


def parse_dicom_tls(orthanc: Mapping[str, Any], base_dir: str) -> Optional[DicomTls]:
    """The settings, or None when orthanc.json gives none of the three files."""
    given = {key: orthanc.get(key) for key in KEYS}
    if not any(given.values()):
        return None
    for key, value in given.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a file name, got {type_name(value)}",
                              f"DICOM TLS needs {', '.join(KEYS)}")
    minimum = orthanc.get("DicomTlsMinimumProtocolVersion", 0)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or not 0 <= minimum <= 5:
        raise ConfigError("DicomTlsMinimumProtocolVersion", f"expected 0 to 5, got {minimum!r}")
    return DicomTls(*(resolve(given[key], base_dir) for key in KEYS),
                    remote_certificate_required=bool(orthanc.get("DicomTlsRemoteCertificateRequired", True)),
                    minimum_version=minimum)
