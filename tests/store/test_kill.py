"""Crash safety: an ingest killed with SIGKILL at random points leaves a consistent store.

A child process ingests a tree of zpix files; the parent kills it (SIGKILL, no chance to
clean up) at random moments — between files, while reading, inside a transaction — at
least five times, checks after each kill that every recorded file has all its rows and
no row belongs to an unrecorded file, then lets a last run finish and checks the total.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from desilab.store import connect
from tests.store import products as P

NFILES = 8
ROWS = 5_000
CHILD = Path(__file__).with_name("_ingest_child.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kill_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("killtree")
    for i in range(NFILES):
        sub = d / f"part{i:02d}"
        sub.mkdir()
        P.write_zpix(sub / "zpix-main-dark.fits", ROWS, 100 + i, first_id=i * ROWS)
    return d


def _start(url: str, tree: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, str(tree)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )


def _consistent(url: str) -> int:
    with connect(url) as store:
        assert store.check() == []
        rows = dict(store._rows("SELECT file_id, rows FROM ingested_files"))
        assert all(n == ROWS for n in rows.values())
        total = store.query("SELECT count(*) AS n FROM zcatalog").column(0)[0].as_py()
        assert total == ROWS * len(rows)
        return len(rows)


def test_sigkill_at_random_points_leaves_a_consistent_store(store_url: str, kill_tree: Path):
    rng = np.random.default_rng(2024)
    kills = 0
    attempts = 0
    done_before = 0
    per_file = 0.25  # seconds one file takes, updated from what the child reports
    while kills < 5 and attempts < 12:
        attempts += 1
        proc = _start(store_url, kill_tree)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        # wait for a random number of committed files, then a random fraction of the time
        # one file takes: the kill lands while the next file is read or written, however
        # fast the machine (a fixed delay let a fast ingest finish before every kill)
        wait_files = int(rng.integers(0, max(1, NFILES - done_before) // 2 + 1))
        t_last = time.perf_counter()
        for _ in range(wait_files):
            if not proc.stdout.readline().startswith("done"):
                break
            now = time.perf_counter()
            per_file, t_last = now - t_last, now
        time.sleep(float(rng.uniform(0.0, per_file)))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc.stdout.close()
        done_before = _consistent(store_url)
    assert kills >= 5
    assert done_before < NFILES, "every kill came too late to interrupt anything"
    # a last run without interruption completes the ingest
    proc = _start(store_url, kill_tree)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "finished" in out
    statuses = [ln.split()[1] for ln in out.splitlines() if ln.startswith("done")]
    assert statuses.count("skipped") == done_before
    assert _consistent(store_url) == NFILES
