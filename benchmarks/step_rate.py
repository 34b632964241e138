"""Training steps a second of a zoo config's network, on random photos: what the benchmarks share.

A step is what training does per batch: forward, loss, backward, AdamW (fused, as the
classifier's); in bf16 the forward runs under CPU autocast as Lightning's bf16-mixed does.
"""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the zoo's models, used in place
from models import create_model  # noqa: E402


def config_network(name: str) -> tuple[nn.Module, int, int]:
    """configs/<name>.yaml's network (over configs/defaults.yaml), its photo size and batch size."""
    defaults, config = (
        yaml.safe_load((REPO / "configs" / f"{n}.yaml").read_text()) for n in ("defaults", name)
    )
    model = {**defaults["model"], **config.get("model", {})}
    data = {**defaults["data"], **config.get("data", {})}
    network = create_model(model["network"], image_size=data["image_size"], **model.get("network_kwargs", {}))
    return network, data["image_size"], data["batch_size"]


def photos_per_second(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: int,
    size: int,
    seconds: float,
    bf16: bool = False,
) -> float:
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch) < 0.5).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = network(x).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(z.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocator and kernel choices
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)
