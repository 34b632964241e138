"""`trainer.precision: null`: the precision that pays on this machine, decided from what the chip has.

The answer is a fact of the hardware, never a timing, so the same machine gives the same
answer on every call, and a resumed run (whose config.yaml holds the resolved value) keeps it.

- NVIDIA GPU: bf16-mixed where the GPU has bf16 arithmetic (compute capability 8.0 and up),
  16-mixed on older ones (T4, V100). `torch.cuda.is_bf16_supported()` counts emulation as
  support unless asked not to, and emulated bf16 is slower than fp16.
- Apple GPUs, TPUs and other accelerators: 32-true, the safe default.
- CPU: bf16-mixed only with bf16 matrix instructions (AVX512-BF16 or AMX-BF16 in the CPU
  flags). Without them torch emulates bf16: we measured 0.67x on a Xeon and 0.05x on an AMD
  EPYC with AVX2. With them, every zoo config's training step but logreg's runs 1.37-1.84x
  faster in bf16 (step rates per CPU in docs/performance.md, from
  benchmarks/precision_step_rates.py); logreg's config keeps float32.
"""

import platform
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def choose_precision(accelerator: str) -> str:
    """A Lightning precision string for a run on `accelerator` (every DDP rank reads the same answer)."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return cuda_precision()
    on_mps = accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available()
    if on_mps or accelerator not in ("auto", "cpu"):
        return "32-true"
    return "bf16-mixed" if cpu_has_bf16_matmul() else "32-true"


def cuda_precision() -> str:
    """bf16-mixed on GPUs with native bf16 (Ampere and later), 16-mixed on older ones."""
    return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"


def cpu_has_bf16_matmul(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the x86 CPU lists a bf16 matrix instruction set (Linux reads it from /proc/cpuinfo).

    Elsewhere (macOS, Windows, ARM) the answer is False: no bf16 path measured there yet.
    """
    if platform.machine().lower() not in ("x86_64", "amd64") or not cpuinfo.is_file():
        return False
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in BF16_CPU_FLAGS)
    return False
