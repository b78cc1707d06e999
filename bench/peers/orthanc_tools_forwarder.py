"""python-orthanc-tools' OrthancForwarder (PyPI orthanc-tools, installed in .venv-bench only for
the benchmark) as its documentation shows it: every new instance forwarded over DICOM, deleted
once sent.

    .venv-bench/bin/python orthanc_tools_forwarder.py http://127.0.0.1:8042 dest
"""
import sys

from orthanc_api_client import OrthancApiClient
from orthanc_tools import ForwarderDestination, ForwarderMode, OrthancForwarder
from orthanc_tools.orthanc_monitor import ChangeType

OrthancForwarder(source=OrthancApiClient(sys.argv[1]),
                 destinations=[ForwarderDestination(destination=sys.argv[2], forwarder_mode=ForwarderMode.DICOM)],
                 trigger=ChangeType.NEW_INSTANCE).execute()
