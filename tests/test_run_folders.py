"""Every run gets a folder of its own, runs/<name>/version_<n>/: with or without TensorBoard,
and when two runs of one config start at the same moment."""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import ARTICLE_CONFIG, REPO, TINY
from training.resume import claim_run_folder


def test_runs_claiming_at_the_same_moment_each_get_their_own_folder(tmp_path):
    runs = tmp_path / "runs" / "mlp_article"
    (runs / "version_3").mkdir(parents=True)  # an earlier run: numbering goes on after it
    start = threading.Barrier(16)

    def claim(_: int):
        start.wait()  # all 16 list the folder and pick a number together
        return claim_run_folder(runs)

    with ThreadPoolExecutor(16) as pool:
        claimed = list(pool.map(claim, range(16)))
    assert sorted(folder.name for folder in claimed) == sorted(f"version_{n}" for n in range(4, 20))


def test_two_runs_without_a_logger_started_together_each_fill_their_own_folder(tmp_path, pets):
    command = [sys.executable, str(REPO / "train.py"), "--config", str(ARTICLE_CONFIG), "--data.root"]
    command += [str(pets), *TINY, "--trainer.max_epochs", "1", "--trainer.logger", "false"]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]  # nothing in the working folder
    folders = sorted((tmp_path / "runs" / "mlp_article").iterdir())
    assert [folder.name for folder in folders] == ["version_0", "version_1"]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "config.yaml"]
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    said = sorted(
        line.split()[-1] for stdout, _ in outputs for line in stdout.splitlines() if "run folder:" in line
    )
    assert said == ["runs/mlp_article/version_0", "runs/mlp_article/version_1"]
