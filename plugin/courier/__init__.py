"""Courier: DICOM routing, pseudonymization and transfer jobs inside Orthanc."""

VERSION = "0.1.0"
