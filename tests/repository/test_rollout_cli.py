"""The command line of rollouts: `dlwp train --rollout`, `dlwp rollout status|promote|abort`."""

from __future__ import annotations

import shutil
import subprocess
import sys

from ..conftest import COMMITTED_MODELS, REPO, ServerProcess, needs_datasets


def dlwp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@needs_datasets
def test_train_with_rollout_starts_one_and_the_cli_follows_and_ends_it(tmp_path, data_dir):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    server = ServerProcess({"DLWP_MODELS_DIR": str(tmp_path)}).wait_ready()
    url = ["--url", server.url]
    try:
        trained = dlwp("train", "housing", "--epochs", "1", "--quiet", "--models-dir",
                       str(tmp_path), "--data-dir", str(data_dir), "--serve-url", server.url,
                       "--rollout", "canary")  # fmt: skip
        status = dlwp("rollout", "status", "housing", *url)
        again = dlwp("rollout", "start", "housing", "--version", "2", "--mode", "shadow", *url)
        aborted = dlwp("rollout", "abort", "housing", *url)
        restarted = dlwp("rollout", "start", "housing", "--version", "2", "--mode", "shadow",
                         "--gate", "min_compared=300", *url)  # fmt: skip
        promoted = dlwp("rollout", "promote", "housing", "--json", *url)
    finally:
        server.stop()

    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "canary rollout" in trained.stdout and "of version 2 beside 1" in trained.stdout
    assert status.returncode == 0 and "RUNNING  (canary, share 0.1)" in status.stdout
    assert "p99 ms" in status.stdout and "agreement" in status.stdout
    assert "top prediction" in status.stdout, "each version's prediction mix"
    assert again.returncode == 2 and "409" in again.stderr and "already running" in again.stderr
    assert aborted.returncode == 0 and "ABORTED" in aborted.stdout
    assert restarted.returncode == 0 and "min_compared 300" in restarted.stdout
    assert promoted.returncode == 0 and '"state": "promoted"' in promoted.stdout
