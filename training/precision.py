"""`trainer.precision: null`: the precision that pays on this machine, chosen once at start-up.

On an NVIDIA GPU, bf16-mixed where it has bf16 (16-mixed where not); on other accelerators
(Apple GPUs, TPUs) the float32 default, 32-true. On a CPU it depends on the
chip, not on torch: with bf16 matrix instructions (AMX, AVX512-BF16) bf16 autocast runs an
nn.Linear up to several times faster than fp32; without them torch emulates bf16, and we
measured 0.67x on one Xeon and 0.05x on an AMD EPYC with AVX2. CPU flags do not say which
kernels torch will pick, so the CPU case is measured: one small Linear forward and backward
in both precisions, 0.2-0.5 s.
"""

import time

import torch
import torch.nn.functional as F

MIN_CPU_SPEEDUP = 1.2  # bf16 also rounds: it must pay clearly before we trade accuracy for speed


def choose_precision(accelerator: str, processes: int) -> str:
    """A Lightning precision string for a run on `accelerator` with `processes` processes."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    on_mps = accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available()
    if on_mps or accelerator not in ("auto", "cpu"):  # Apple GPUs, TPUs...: the safe default
        return "32-true"
    if processes > 1:  # every rank must choose the same, and a measurement could differ per rank
        return "32-true"
    return "bf16-mixed" if cpu_bf16_speedup() >= MIN_CPU_SPEEDUP else "32-true"


def cpu_bf16_speedup(width: int = 512, rows: int = 256) -> float:
    """fp32 time / bf16-autocast time of a (rows, width) @ (width, width) Linear forward+backward."""
    x = torch.randn(rows, width, requires_grad=True)
    weight = torch.randn(width, width, requires_grad=True)

    def seconds(bf16: bool, limit: float = float("inf")) -> float:
        best = float("inf")
        for _ in range(3):  # the best of three: the first call also pays one-off set-up costs
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                F.linear(x, weight).float().sum().backward()
            best = min(best, time.perf_counter() - start)
            if best > limit:  # clearly slower (emulated bf16 can be 20x): no need to time it again
                break
        return best

    fp32 = seconds(bf16=False)
    return fp32 / seconds(bf16=True, limit=2 * fp32)
