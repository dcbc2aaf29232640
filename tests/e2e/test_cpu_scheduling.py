"""``--cpu-scheduling``: the services' threads run as SCHED_BATCH by default, or as they were started."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.e2e.running import AuditService, CLIProcess, wait_for
from tests.integration.servers import free_port

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")


def policies(pid: int) -> set[int]:
    """The scheduling policy of every thread of process ``pid``."""
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_the_audit_services_threads_run_as_sched_batch(tmp_path: Path) -> None:
    service = AuditService(f"sqlite:///{tmp_path}/a.db")
    try:
        threads = os.listdir(f"/proc/{service.proc.pid}/task")
        assert len(threads) >= 2  # the event loop's and the writer's at least
        assert policies(service.proc.pid) == {os.SCHED_BATCH}
    finally:
        assert service.stop() == 0


def test_inherit_leaves_the_scheduling_the_process_started_with(tmp_path: Path) -> None:
    service = AuditService(f"sqlite:///{tmp_path}/a.db", "--cpu-scheduling", "inherit")
    try:
        assert policies(service.proc.pid) == {os.sched_getscheduler(0)}  # as this test runner's
    finally:
        assert service.stop() == 0


def test_the_users_services_threads_run_as_sched_batch(tmp_path: Path) -> None:
    port = free_port()
    service = CLIProcess("users", "--port", str(port), "--db", f"sqlite:///{tmp_path}/u.db", "--no-relay")

    def healthy() -> bool:
        assert service.proc.poll() is None, service.output()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "the users service to answer /healthz")
        assert policies(service.proc.pid) == {os.SCHED_BATCH}
    finally:
        assert service.stop() == 0


def test_an_unknown_policy_is_refused_by_name() -> None:
    service = CLIProcess("audit", "--cpu-scheduling", "fifo", "--db", "sqlite:///:memory:")
    assert service.wait() == 2
    assert "--cpu-scheduling: invalid choice: 'fifo'" in service.stderr
