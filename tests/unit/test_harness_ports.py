"""The tests' own port allocation: under pytest-xdist two workers never hand out the same port,
whatever their number (the kernel's own picks for bind() are all odd here, so splitting them by
residue left an even-numbered worker without any)."""
import socket

import pytest

import harness


@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_each_worker_hands_out_ports_of_its_own_block(monkeypatch, count):
    monkeypatch.setattr(harness, "_GIVEN", set())
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
    given = {}
    for index in range(count):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        given[index] = [harness.free_port() for _ in range(20)]
    for index, ports in given.items():
        assert len(set(ports)) == 20
        assert all(port in harness.worker_ports(index, count) for port in ports)
        assert all(port < 32768 for port in ports)
    everything = [port for ports in given.values() for port in ports]
    assert len(set(everything)) == len(everything)


def test_a_port_someone_listens_on_is_skipped(monkeypatch):
    monkeypatch.setattr(harness, "_GIVEN", set())
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    first = next(port for port in harness.worker_ports(1, 2) if harness._bindable(port))   # the one it would give
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        port = harness.free_port()
    assert port != first and port in harness.worker_ports(1, 2)


def test_outside_xdist_any_free_port_is_handed_out_once(monkeypatch):
    monkeypatch.setattr(harness, "_GIVEN", set())
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    ports = [harness.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert harness._worker_share() == (0, 1)
