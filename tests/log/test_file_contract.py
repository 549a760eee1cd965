"""The event-log contract on the file backend."""

from __future__ import annotations

import pytest

from tests.log.contract import LogContract


class TestFileLog(LogContract):
    @pytest.fixture
    def target(self, tmp_path):
        return tmp_path / "runs"
