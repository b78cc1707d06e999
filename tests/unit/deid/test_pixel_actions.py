"""A profile that removes or replaces the Pixel Data sees it: the file is then read and written
whole, on send and on ingest alike, instead of its Pixel Data being set aside and put back."""
import io

import pydicom

from courier.config.profiles import Profile
from courier.config.routes import Route
from courier.deid.ingest_gate import MODIFY, IngestGate
from courier.deid.pseudonymizer import Pseudonymizer
from courier.store.store import Store
from factory import file_bytes, make_instance

SECRET = b"0123456789abcdef0123"
PIXEL_DATA = 0x7FE00010


def profile(**kwargs) -> Pseudonymizer:
    return Pseudonymizer(Profile("p", SECRET, burned_in="Pass", **kwargs))


def test_the_default_profile_sets_the_pixel_data_aside_and_puts_it_back_as_it_came():
    data = file_bytes(make_instance())
    assert not profile().touches_pixels
    out, _ = profile().pseudonymize_bytes(data)
    assert pydicom.dcmread(io.BytesIO(out)).PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData


def test_a_profile_removing_the_pixel_data_sends_none():
    removing = profile(remove=frozenset({PIXEL_DATA}))
    assert removing.touches_pixels
    out, _ = removing.pseudonymize_bytes(file_bytes(make_instance()))
    assert "PixelData" not in pydicom.dcmread(io.BytesIO(out))


def test_a_profile_removing_the_pixel_data_stores_none_on_ingest(tmp_path):
    route = Route("r", "Instance", (), ("d",), pseudonymize="p", pseudonymize_on="Ingest")
    gate = IngestGate([route], profile(remove=frozenset({PIXEL_DATA})), Store(str(tmp_path / "g.sqlite")),
                      str(tmp_path / "q"))
    action, out = gate.decide(file_bytes(make_instance()))
    assert action == MODIFY and "PixelData" not in pydicom.dcmread(io.BytesIO(out))
