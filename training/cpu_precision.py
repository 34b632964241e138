"""bf16-mixed on a CPU pays only where the CPU multiplies bfloat16 itself.

On an AMD EPYC with AVX512-BF16 (2 cores) a 2048x2048 `torch.mm` runs at 410 GFLOP/s in
bfloat16 against 190 in float32, and configs/shift_mlp.yaml trains in half the time.
A CPU without bfloat16 instructions is slower in bf16 than in float32: on the same
machine with oneDNN held to older instruction sets, the same mm ran at 72 GFLOP/s in
bfloat16 against 173 in float32 (`ONEDNN_MAX_CPU_ISA=AVX512_CORE`), and under 1 against
167 with AVX2 only. train.py says so in one line instead of training slowly.
"""

import platform

import torch

EMULATED_BF16 = (
    "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bf16-mixed runs slower "
    "than float32 here; pass --trainer.precision 32-true"
)


def cpu_has_native_bf16() -> bool | None:
    """True/False on x86 CPUs; None where torch cannot tell (other architectures, older torch)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own dispatch checks
    probes = [probe for name in names if (probe := getattr(torch.cpu, name, None)) is not None]
    if not probes:
        return None
    return any(probe() for probe in probes)


def emulated_bf16_warning(precision: str, on_cpu: bool) -> str | None:
    """The warning for a bf16 run on a CPU that would emulate it; None when there is nothing to say."""
    if on_cpu and str(precision).startswith("bf16") and cpu_has_native_bf16() is False:
        return EMULATED_BF16
    return None
