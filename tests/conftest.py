"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from loopback import LoopbackServer


@pytest.fixture
def server():
    """A running ``LoopbackServer`` on 127.0.0.1 (an ephemeral port), shut down after the test."""
    srv = LoopbackServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
