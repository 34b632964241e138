"""Resuming through train.py as a user types it: `--ckpt_path last | RUN_FOLDER | FILE`.

A resume reads the run's own config.yaml (nothing but --ckpt_path needs typing again), goes
on in the same version folder, refuses a change that would alter what the run learns, and
after signals finishes as if the run had never stopped: the same final weights, best
checkpoint and test metrics as the uninterrupted `trained_run` of the same config.

Every train.py run here is a subprocess, the runs side by side in the `sessions` fixture;
the tests only read what they left. Two refusals that stop before any training call
train.py's main() in this process instead: the same code, without paying torch's import
again (the subprocess refusal checks that nothing else reaches stderr on the way).
"""

import hashlib
import re
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import train
from inference import read_checkpoint
from tests.conftest import ARTICLE_CONFIG, TINY, TrainedRun, run_script

RUN = Path("runs") / "mlp_article" / "version_0"  # where train.py puts the article config's first run
LAST = RUN / "checkpoints" / "last.ckpt"
STEPS_PER_EPOCH = 4  # the tiny run's 52 training photos in batches of 16; `sessions` checks it
# TINY trains 3 epochs, global steps 1-12. Both signals land mid-epoch: SIGTERM in the middle
# epoch (so its resume crosses an epoch's start), SIGINT in the last, in the resumed session.
SIGTERM_STEP, SIGINT_STEP, SIGKILL_STEP = 6, 9, 6
NEVER_IN_A_RESUME = ("not resumable", "unreliable", "weights_only")  # Lightning's and torch's hints


def signal_at(step: int, name: str, *once: str) -> list[str]:
    """The options that add tests.interrupt_callback.SignalAtStep to a run."""
    options = ["--trainer.callbacks+=tests.interrupt_callback.SignalAtStep"]
    options += [f"--trainer.callbacks.step={step}", f"--trainer.callbacks.signal={name}"]
    return options + [f"--trainer.callbacks.once={path}" for path in once]


def train_py(work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_script("train.py", "--config", ARTICLE_CONFIG, *args, cwd=work)


def signalled(pets: Path, work: Path) -> dict:
    """Train; SIGTERM stops it; `--ckpt_path last` goes on until SIGINT stops it; `--ckpt_path
    <its last.ckpt>` finishes it. What each step left is kept for the tests."""
    work.mkdir()
    found = {}
    found["sigterm"] = train_py(
        work,
        "--data.root",
        pets,
        *TINY,
        *signal_at(SIGTERM_STEP, "SIGTERM"),
        *signal_at(SIGINT_STEP, "SIGINT"),
    )
    found["config"] = config_of(work)
    found["last_at_sigterm"] = read_checkpoint(work / LAST) if (work / LAST).is_file() else {}
    found["sigint"] = train_py(work, "--ckpt_path", "last")  # nothing of how it trained typed again
    found["last_at_sigint"] = read_checkpoint(work / LAST) if (work / LAST).is_file() else {}
    found["finished"] = train_py(work, "--ckpt_path", str(work / LAST))
    return found


def killed(pets: Path, work: Path) -> dict:
    """Train with last.ckpt saved after every step; SIGKILL it; `--ckpt_path <run folder>` goes
    on from the save before, for two more epochs than it began with; a plain `--ckpt_path
    last` then finds nothing left to train."""
    work.mkdir()
    found = {}
    found["killed"] = train_py(
        work, "--data.root", pets, *TINY, "--last_checkpoint.train_time_interval", "0:00:00.001",
        *signal_at(SIGKILL_STEP, "SIGKILL", "killed.marker"),
    )  # fmt: skip
    found["config"] = config_of(work)
    found["files_after_kill"] = sorted(p.name for p in (work / RUN / "checkpoints").glob("*"))
    found["last_after_kill"] = read_checkpoint(work / LAST) if (work / LAST).is_file() else {}
    found["resumed"] = train_py(work, "--ckpt_path", str(RUN), "--trainer.max_epochs", "5")
    found["again"] = train_py(work, "--ckpt_path", "last")  # nothing typed: it keeps its 5 epochs
    return found


def refused_change(trained_run: TrainedRun, work: Path) -> dict:
    """In a copy of the trained run's folder: `--ckpt_path last --data.batch_size 8`."""
    shutil.copytree(trained_run.work, work)
    before = snapshot(work)
    return {
        "work": work,
        "before": before,
        "refused": train_py(work, "--ckpt_path", "last", "--data.batch_size", "8"),
    }


def config_of(work: Path) -> bytes:
    config = work / RUN / "config.yaml"
    return config.read_bytes() if config.is_file() else b""


@pytest.fixture(scope="module")
def sessions(request, pets, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    with ThreadPoolExecutor(2) as pool:  # 2 cores: more would only share them
        runs = {"signalled": pool.submit(signalled, pets, root / "signalled"),
                "killed": pool.submit(killed, pets, root / "killed")}  # fmt: skip
        # The uninterrupted reference trains meanwhile, unless an earlier module had it trained.
        trained_run = request.getfixturevalue("trained_run")
        runs["refused"] = pool.submit(refused_change, trained_run, root / "refused")
        found = {name: future.result() for name, future in runs.items()}
    reference = read_checkpoint(trained_run.last)
    assert reference["global_step"] == 3 * STEPS_PER_EPOCH, "TINY's epochs changed: move the *_STEPs"
    found["signalled"]["work"], found["killed"]["work"] = root / "signalled", root / "killed"
    return found


def assert_resumed_in_place(result: subprocess.CompletedProcess, work: Path, config: bytes, k: int) -> None:
    """The resume went on in the run's own folder, its config.yaml untouched, its own config
    written beside it as config.resume-<k>.yaml."""
    for hint in NEVER_IN_A_RESUME:
        assert hint not in result.stderr, f"{hint!r} in the resume's stderr"
    assert f"{RUN} from last.ckpt" in result.stderr  # the resume note, naming the run folder
    assert sorted(p.name for p in (work / RUN).parent.iterdir()) == ["version_0"]  # no version_1
    assert (work / RUN / "config.yaml").read_bytes() == config  # as the run began
    assert (work / RUN / f"config.resume-{k}.yaml").is_file()


def test_sigterm_saves_last_checkpoint_mid_epoch_and_exits_143(sessions):
    found = sessions["signalled"]
    stopped = found["sigterm"]
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "Training finished" not in stopped.stdout
    assert f"saved {LAST}" in stopped.stderr
    last = found["last_at_sigterm"]  # read_checkpoint: a whole file with the `catsdogs` record
    assert last["global_step"] == SIGTERM_STEP and last["epoch"] == SIGTERM_STEP // STEPS_PER_EPOCH
    assert last["optimizer_states"]


def test_resume_last_goes_on_from_its_config_until_sigint_saves_and_stops_it(sessions):
    found = sessions["signalled"]
    resumed = found["sigint"]
    assert resumed.returncode > 0, resumed.stderr[-3000:]  # Lightning ends a Ctrl-C with status 1
    assert "Traceback" not in resumed.stderr and "Training finished" not in resumed.stdout
    assert f"resuming {RUN} from last.ckpt (step {SIGTERM_STEP}): nothing changed" in resumed.stderr
    assert f"saved {LAST}" in resumed.stderr
    assert_resumed_in_place(resumed, found["work"], found["config"], k=1)
    last = found["last_at_sigint"]
    assert last["global_step"] == SIGINT_STEP and last["epoch"] == SIGINT_STEP // STEPS_PER_EPOCH


def test_the_twice_interrupted_run_finishes_like_the_uninterrupted_one(sessions, trained_run):
    found = sessions["signalled"]
    finished = found["finished"]
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_resumed_in_place(finished, found["work"], found["config"], k=2)
    # Mid-epoch resumes: the rest of each epoch in the same order, with the same dropout and
    # flips, then the next epochs as they were. 1e-6: one batch trained otherwise moves ~1e-4.
    for name in ("last.ckpt", "best.ckpt"):
        got = read_checkpoint(found["work"] / RUN / "checkpoints" / name)
        expected = read_checkpoint(trained_run.best.parent / name)
        assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"]), name
        for key, value in expected["state_dict"].items():
            difference = (got["state_dict"][key] - value).abs().max().item()
            assert difference <= 1e-6, (
                f"{name} {key} differs from the uninterrupted run's by {difference:.2e}"
            )
    assert summary_test_line(finished.stdout) == summary_test_line(trained_run.stdout)


def test_a_hard_kill_leaves_the_previous_last_checkpoint_whole(sessions):
    found = sessions["killed"]
    assert found["killed"].returncode == -signal.SIGKILL, found["killed"].stderr[-3000:]
    assert found["files_after_kill"] == ["best.ckpt", "last.ckpt"]  # no temporary left beside them
    last = found["last_after_kill"]  # read_checkpoint: a whole zip, our record, plain data
    assert last["global_step"] == SIGKILL_STEP - 1 and last["optimizer_states"]  # saved after the step before


def test_resume_of_a_run_folder_trains_the_extra_epochs_a_longer_max_epochs_asks(sessions, trained_run):
    found = sessions["killed"]
    resumed = found["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        f"resuming {RUN} from last.ckpt (step {SIGKILL_STEP - 1}): trainer.max_epochs 3 -> 5"
        in resumed.stderr
    )
    assert_resumed_in_place(resumed, found["work"], found["config"], k=1)
    config = yaml.safe_load((found["work"] / RUN / "config.resume-1.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 5
    # Only --ckpt_path and max_epochs were typed: the rest is the run's own config.
    assert config["data"]["root"] == str(trained_run.pets) and config["data"]["batch_size"] == 16
    assert config["model"]["network_kwargs"]["hidden_dims"] == [32, 16, 8]
    last = read_checkpoint(found["work"] / LAST)
    assert last["epoch"] == 5 and last["global_step"] == 5 * STEPS_PER_EPOCH
    assert str(RUN / "checkpoints" / "best.ckpt") in resumed.stdout  # then tested and summarised


def test_a_later_resume_keeps_the_values_the_last_session_changed(sessions):
    # Resumed again with nothing typed, the run keeps max_epochs 5 from its last session: not
    # config.yaml's 3, which Lightning refuses for a checkpoint already past epoch 3.
    found = sessions["killed"]
    again = found["again"]
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {RUN} from last.ckpt (step {5 * STEPS_PER_EPOCH}): nothing changed" in again.stderr
    assert_resumed_in_place(again, found["work"], found["config"], k=2)
    config = yaml.safe_load((found["work"] / RUN / "config.resume-2.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 5
    assert read_checkpoint(found["work"] / LAST)["global_step"] == 5 * STEPS_PER_EPOCH  # nothing more


def summary_test_line(stdout: str) -> str:
    """The summary's `test:` line: acc, auroc, f1 and loss of best.ckpt to 4 decimals."""
    return re.search(r"^\s*test:\s+(.*)$", stdout, re.MULTILINE).group(1)


# --- refusals: one line, status 2, nothing touched ----------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (mtime_ns, sha256)} of every file under `folder`."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(work: Path, capfd, *args: str) -> str:
    """train.py's main() with `args` in `work`: status 2 and the one stderr line it printed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr("sys.argv", ["train.py"])  # pytest's own options are no business of the CLI
        status = train.main(["--config", str(ARTICLE_CONFIG), *args])
    out, err = capfd.readouterr()
    assert status == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert "weights_only=False" not in err and out == ""
    return lines[0]


def test_a_change_that_alters_the_run_is_refused_in_one_line_and_touches_nothing(sessions):
    found = sessions["refused"]
    result = found["refused"]
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]  # nothing else on the way: no warning, no log
    assert lines[0].startswith("error: ") and "--data.batch_size 8 (the run has 16)" in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(found["work"]) == found["before"]


def test_resume_last_without_a_run_says_so_in_one_line(tmp_path, capfd):
    line = refused(tmp_path, capfd, "--ckpt_path", "last")
    assert "--ckpt_path last" in line and "last.ckpt" in line, line
    assert list(tmp_path.iterdir()) == []  # no runs/, no data/ downloaded


def test_a_text_file_named_like_a_checkpoint_is_named_in_one_line(tmp_path, capfd):
    (tmp_path / "x.ckpt").write_text("not a checkpoint, only named like one\n")
    line = refused(tmp_path, capfd, "--ckpt_path", "x.ckpt")
    assert "x.ckpt" in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]


def test_a_weights_only_best_checkpoint_is_refused_as_a_resume_point(trained_run, tmp_path, capfd):
    before = snapshot(trained_run.folder)
    line = refused(tmp_path, capfd, "--ckpt_path", str(trained_run.best))
    assert "best.ckpt holds the weights only" in line and "last.ckpt" in line, line
    assert snapshot(trained_run.folder) == before  # no config.resume-<k>.yaml, no events
