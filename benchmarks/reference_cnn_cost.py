"""What the small CNN that the 82% target comes from would cost on this machine, against the shift MLP.

    python benchmarks/reference_cnn_cost.py [--seconds 20] [--budget-minutes 30]

The target (configs/best.yaml at 82% on the test folder) is the figure a small CNN reaches
from scratch on these 2,000 photos with augmentation and dropout (Chollet, "Deep Learning
with Python", 2017, section 5.2): four 3x3 convolution + max-pool stages of 32, 64, 128 and
128 filters on 150x150 photos, dropout, a 512-unit dense layer, RMSprop, 100 epochs of 100
batches of 32 augmented photos, so 320,000 photos through the network. That network is built
here, for this measurement only: it is not in the zoo, whose layers are all nn.Linear.

Both networks take training steps (forward, backward, optimiser) on random batches, in turn,
in this one process, so they see the same machine; each is timed for about `--seconds` after
3 warm-up steps. Printed: photos a second, and what the budget buys each one.
"""

import argparse

import torch
from step_rate import config_network, photos_per_second
from torch import nn

CNN_PHOTO_PASSES = 100 * 100 * 32  # epochs x steps per epoch x batch size, as published


def reference_cnn(image_size: int = 150) -> nn.Module:
    layers, channels = [], 3
    for filters in (32, 64, 128, 128):
        layers += [nn.Conv2d(channels, filters, 3), nn.ReLU(), nn.MaxPool2d(2)]
        channels = filters
    features = nn.Sequential(*layers)
    flat = features(torch.zeros(1, 3, image_size, image_size)).numel()  # 128 x 7 x 7 at 150 px
    return nn.Sequential(
        features, nn.Flatten(), nn.Dropout(0.5), nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, 1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per network")
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="best.yaml's training budget")
    args = parser.parse_args()
    torch.manual_seed(0)
    cnn = reference_cnn()
    shift_mlp, mlp_size, mlp_batch = config_network("best")
    cnn_rate = photos_per_second(cnn, torch.optim.RMSprop(cnn.parameters(), lr=1e-4), 32, 150, args.seconds)
    mlp_optimizer = torch.optim.AdamW(shift_mlp.parameters(), lr=1e-3, fused=True)  # as training's
    mlp_rate = photos_per_second(shift_mlp, mlp_optimizer, mlp_batch, mlp_size, args.seconds)
    budget = args.budget_minutes * 60
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    print("| network | photos/s | in the budget | the CNN's published 320,000 photo passes |")
    print("|---|---:|---:|---:|")
    print(
        f"| reference CNN, 150 px, batches of 32 | {cnn_rate:.0f} | {cnn_rate * budget / 2000:.0f} epochs "
        f"of 2,000 | {CNN_PHOTO_PASSES / cnn_rate / 60:.0f} min |"
    )
    print(
        f"| best.yaml's network, {mlp_size} px, batches of {mlp_batch} | {mlp_rate:.0f} | "
        f"{mlp_rate * budget / 1800:.0f} epochs of 1,800 | {CNN_PHOTO_PASSES / mlp_rate / 60:.0f} min |"
    )
    times = CNN_PHOTO_PASSES / cnn_rate / budget
    print(f"the CNN's recipe takes {times:.1f}x the {args.budget_minutes:.0f}-minute budget here")


if __name__ == "__main__":
    main()
