"""Imports: DICOM files that come on disks and in archives (watched folders, uploads, the command line)."""
