from courier.config import dcmtk_env
from courier.config.parse import orthanc_warnings


def test_tcp_nodelay_is_set_only_where_the_environment_does_not_say():
    assert dcmtk_env.to_set({}) == {"TCP_NODELAY": "1"}
    assert dcmtk_env.to_set({"PATH": "/usr/bin"}) == {"TCP_NODELAY": "1"}
    assert dcmtk_env.to_set({"TCP_NODELAY": "0"}) == {}
    assert dcmtk_env.to_set({"TCP_NODELAY": "1"}) == {}


def test_an_environment_that_keeps_nagles_algorithm_on_is_warned_about_by_name():
    for kept in ("0", " 0", "-0", "no", "", "x1", "0x1"):
        warning = dcmtk_env.nagle_kept({"TCP_NODELAY": kept})
        assert warning and "TCP_NODELAY" in warning and "TCP_NODELAY=1" in warning, kept
        assert orthanc_warnings({"SaveJobs": False}, {"TCP_NODELAY": kept}) == (warning,)
    for off in ({}, {"TCP_NODELAY": "1"}, {"TCP_NODELAY": "2"}, {"TCP_NODELAY": " 1"},
                {"TCP_NODELAY": "1abc"}, {"TCP_NODELAY": "-1"}):     # as DCMTK's sscanf("%d") reads them
        assert dcmtk_env.nagle_kept(off) is None
        assert orthanc_warnings({"SaveJobs": False}, off) == ()
