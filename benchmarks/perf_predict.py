"""Prediction figures: predict.py end to end on a folder of photos, and start-up plus checkpoint load.

Both are measured as fresh processes, the way a user runs them; each against the floor
that no change to this project can go below (starting Python and importing torch).
"""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD = "from inference import CatsDogsPredictor; CatsDogsPredictor.from_checkpoint({ckpt!r})"
# What loading needs at the least: torch, the zoo model and the tensors, without Lightning.
FLOOR = (
    "import torch; from models import create_model; c = torch.load({ckpt!r}, weights_only=True); "
    "h = c['hyper_parameters']; m = create_model(h['network'], image_size=h['image_size'], "
    "**h['network_kwargs']); m.load_state_dict({{k[8:]: v for k, v in c['state_dict'].items() "
    "if k.startswith('network.')}})"
)


def wall(command: list[str], repeats: int) -> tuple[float, subprocess.CompletedProcess]:
    """Best wall time of `repeats` runs of a fresh process in the repo root."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return best, result


def predict_folder(ckpt: str, folders: list[str], out: Path, repeats: int) -> dict:
    """python predict.py --ckpt CKPT FOLDER... as a user runs it: images/s including start-up."""
    command = [sys.executable, "predict.py", "--ckpt", ckpt, *folders, "--output", str(out)]
    seconds, _ = wall(command, repeats)
    rows = len(out.read_text().splitlines()) - 1  # minus the CSV header
    start_only, _ = wall([sys.executable, "-c", LOAD.format(ckpt=ckpt)], repeats)
    return {
        "images": rows,
        "seconds": seconds,
        "images_per_s": rows / seconds,
        "after_startup_images_per_s": rows / max(1e-9, seconds - start_only),
    }


def startup(ckpt: str, repeats: int) -> dict:
    """Seconds to start Python and load the checkpoint, vs `import torch` and a Lightning-free load."""
    load, _ = wall([sys.executable, "-c", LOAD.format(ckpt=ckpt)], repeats)
    torch_only, _ = wall([sys.executable, "-c", "import torch"], repeats)
    floor, _ = wall([sys.executable, "-c", FLOOR.format(ckpt=ckpt)], repeats)
    return {"load": load, "import_torch": torch_only, "torch_only_load": floor}
