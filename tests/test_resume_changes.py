"""What a resume does with values that differ from the run's: an edited --config file counts as
typed, another accelerator chooses its precision again, and a session that fails leaves no
config behind. Each works on a copy of the session's `trained_run` (3 tiny epochs, 12 steps),
calling train.py's CLI in this process: the same code, without paying torch's import again."""

import shutil
from pathlib import Path

import pytest
import yaml

import train
from tests.conftest import ARTICLE_CONFIG, TINY
from training.cli import CatsDogsCLI
from training.precision import choose_precision

RUN = Path("runs") / "mlp_article" / "version_0"


@pytest.fixture
def work(trained_run, tmp_path, monkeypatch) -> Path:
    """A copy of the trained run's working folder (files keep their times), as the current folder."""
    work = tmp_path / "work"
    shutil.copytree(trained_run.work, work)
    monkeypatch.chdir(work)
    monkeypatch.setattr("sys.argv", ["train.py"])  # pytest's own options are no business of the CLI
    return work


def edited_config(work: Path, **changes: dict) -> Path:
    """The run's own config.yaml with `changes` ({section: {key: value}}), saved as a new file."""
    config = yaml.safe_load((work / RUN / "config.yaml").read_text())
    for section, values in changes.items():
        config[section].update(values)
    path = work / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_values_edited_in_the_config_file_are_refused_like_typed_ones(work, capfd):
    edited = edited_config(work, model={"lr": 0.01, "weight_decay": 0.5})
    status = train.main(["--config", str(edited), "--ckpt_path", "last", "--trainer.max_epochs", "4"])
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1, err[-3000:]
    assert f"model.lr 0.01 in {edited} (the run has 0.003)" in lines[0], lines[0]
    assert f"model.weight_decay 0.5 in {edited} (the run has 0.05)" in lines[0], lines[0]
    assert "put the run's values back in the config file" in lines[0]
    assert not (work / RUN / "config.resume-1.yaml").exists()


def test_a_changeable_value_edited_in_the_config_file_is_taken_and_recorded(work):
    edited = edited_config(work, trainer={"max_epochs": 5})
    cli = CatsDogsCLI(["--config", str(edited), "--ckpt_path", "last"])
    assert cli.config["trainer.max_epochs"] == 5
    assert "trainer.max_epochs 3 -> 5" in cli.resume_note


def test_an_unedited_config_file_older_than_the_run_changes_nothing(work):
    # The run began from configs/mlp_article.yaml with TINY typed over it: not an edit.
    cli = CatsDogsCLI(["--config", str(ARTICLE_CONFIG), "--ckpt_path", "last"])
    assert "nothing changed" in cli.resume_note
    assert cli.config["data.image_size"] == 16


def test_a_run_resumed_on_another_accelerator_chooses_its_precision_again(work):
    # As a run trained on an older GPU records it; resumed here on the CPU.
    config = work / RUN / "config.yaml"
    config.write_text(
        config.read_text()
        .replace("accelerator: auto", "accelerator: cuda")
        .replace("precision: 32-true", "precision: 16-mixed")
    )
    cli = CatsDogsCLI(
        ["--config", str(ARTICLE_CONFIG), "--ckpt_path", "last", "--trainer.accelerator", "cpu"]
    )
    assert cli.config["trainer.precision"] == choose_precision("cpu")
    assert "trainer.accelerator cuda -> cpu" in cli.resume_note
    assert f"trainer.precision 16-mixed -> {choose_precision('cpu')}" in cli.resume_note


def test_a_resume_that_fails_on_a_full_disk_says_so_in_one_line_and_leaves_no_config(
    pets, tmp_path, capfd, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["train.py"])
    full_disk_at_step_6 = [
        "--trainer.callbacks+=tests.interrupt_callback.DiskFullAtStep",
        "--trainer.callbacks.step=6",
    ]
    first = ["--config", str(ARTICLE_CONFIG), "--data.root", str(pets), *TINY, "--trainer.max_epochs", "1"]
    assert train.main([*first, *full_disk_at_step_6]) == 0  # 4 steps: it never gets to 6
    capfd.readouterr()
    resume = ["--config", str(ARTICLE_CONFIG), "--ckpt_path", "last", "--trainer.max_epochs", "2"]
    status = train.main(resume)
    out, err = capfd.readouterr()
    assert status == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: no space left in {tmp_path / RUN} (") and "MB free" in last, last
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / RUN).glob("config*")) == ["config.yaml"]
    # So the same command, once there is room, still sees its change.
    assert "trainer.max_epochs 1 -> 2" in CatsDogsCLI(resume).resume_note
