"""scripts/gpu_check.sh, the GPU gate, as far as a machine without a GPU can check it: it parses,
it fails loudly here, and its TensorBoard check holds for a real run and refuses a wrong one."""

import argparse
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"


@pytest.fixture(scope="module")
def helper():
    """scripts/gpu_check.py as a module: importing it runs its top level."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shell_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run scripts/gpu_check.sh itself")
def test_without_a_gpu_it_fails_in_one_line_and_checks_nothing(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "work")],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stdout.splitlines() == [
        f"FAIL  no CUDA GPU: torch.cuda.is_available() is not True for {sys.executable} "
        f"({tmp_path / 'work' / 'logs' / '0.log'}); nothing checked",
        "0 passed, 1 failed",
    ]
    assert not (tmp_path / "work" / "photos").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run scripts/gpu_check.sh itself")
@pytest.mark.parametrize("command", [["precision"], ["syncs", "--config", "configs/quick.yaml"]])
def test_every_helper_command_parses_then_refuses_to_run_without_a_gpu(helper, command):
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        helper.main(command)


def test_the_tensorboard_check_passes_a_real_run_and_fails_a_wrong_epoch_count(helper, trained_run):
    """The check reads any run's events; train.py's test run has a snapshot after each of 3 epochs."""
    args = argparse.Namespace(run_dir=str(trained_run.folder), epochs=3, max_grad_norm=1e3)
    helper.tensorboard(args)
    with pytest.raises(AssertionError, match="snapshots"):
        helper.tensorboard(argparse.Namespace(**{**vars(args), "epochs": 2}))
    with pytest.raises(AssertionError, match="grad_norm up to"):
        helper.tensorboard(argparse.Namespace(**{**vars(args), "max_grad_norm": 1e-9}))
