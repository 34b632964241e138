"""Photos a second of every zoo config's training step in fp32 and in bf16 autocast, on this CPU.

    python benchmarks/precision_step_rates.py [--configs logreg mlp_article ...] [--seconds 5]

What training/precision.py's choice rests on: on a CPU with bf16 matrix instructions
(AVX512-BF16, AMX) bf16-mixed should train every config faster; without them, slower. The
two precisions alternate (two rounds each) in this one process, so both see the same machine;
the best round of each is kept. Prints a markdown table with the CPU and what the chooser says.
"""

import argparse

import torch
from step_rate import config_network, photos_per_second
from zoo import cpu_name

from training.precision import choose_precision

CONFIGS = [
    "logreg",
    "mlp_article",
    "mlp_article_32px",
    "mlp_deep",
    "resmlp",
    "mixer",
    "quick",
    "shift_mlp",
    "best",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per precision and round")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}; trainer.precision null -> {choose_precision('cpu')}"
    )
    print("| config | batch | fp32 photos/s | bf16 photos/s | bf16 / fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name in args.configs:
        network, size, batch = config_network(name)
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
        rates = {False: 0.0, True: 0.0}
        for _ in range(2):
            for bf16 in (False, True):
                rate = photos_per_second(network, optimizer, batch, size, args.seconds, bf16=bf16)
                rates[bf16] = max(rates[bf16], rate)
        fp32, bf16 = rates[False], rates[True]
        print(f"| {name} | {batch} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
