"""What orthanc.json's "PythonScript" names. Puts Courier's venv and package on sys.path, then
installs Courier. orthanc-python embeds Debian's /usr/bin/python3, so the venv must be made with
that interpreter (`make install` does it). COURIER_VENV overrides the venv location."""
import glob
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_VENV = os.environ.get("COURIER_VENV", os.path.join(os.path.dirname(_HERE), ".venv"))
for _site in glob.glob(os.path.join(_VENV, "lib", "python3*", "site-packages")):
    if _site not in sys.path:
        sys.path.insert(0, _site)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import orthanc  # noqa: E402  (provided by orthanc-python)

from courier import app  # noqa: E402

courier = app.install(orthanc)
