"""The Custom Scalars tab's layout: one category per layer, its statistics side by side."""

import re

# Tags of the per-layer scalars, `<layer>/<statistic>`; the callback logs under these names.
WEIGHT_NORM = "weight_norm"  # ||W||, Frobenius norm
GRAD_NORM = "grad_norm"  # ||dL/dW||
UPDATE_RATIO = "update_ratio"  # ||W_after_step - W_before|| / ||W_before||; ~1e-3 is healthy
DEAD_FRACTION = "dead_fraction"
SATURATED_FRACTION = "saturated_fraction"


def custom_scalar_layout(layer_activations: dict[str, str | None]) -> dict[str, dict[str, list]]:
    """{category: {chart title: ["Multiline", [tag regex, ...]]}} for SummaryWriter.add_custom_scalars."""

    def tags(layer: str, *statistics: str) -> list[str]:
        return [f"^{re.escape(layer)}/{statistic}$" for statistic in statistics]

    layout: dict[str, dict[str, list]] = {}
    for layer, activation in layer_activations.items():
        charts = {
            "weight norm ||W||": ["Multiline", tags(layer, WEIGHT_NORM)],
            "gradient norm ||dL/dW||": ["Multiline", tags(layer, GRAD_NORM)],
            "update / weight ratio": ["Multiline", tags(layer, UPDATE_RATIO)],
        }
        if activation is not None:
            charts["dead and saturated units"] = ["Multiline", tags(layer, DEAD_FRACTION, SATURATED_FRACTION)]
        layout[layer] = charts
    # One chart per statistic with every layer on it: which layer learns fastest, which dies.
    layout["all layers"] = {
        title: ["Multiline", [f".*/{statistic}$"]]
        for title, statistic in (
            ("weight norm", WEIGHT_NORM),
            ("gradient norm", GRAD_NORM),
            ("update / weight ratio", UPDATE_RATIO),
            ("dead units", DEAD_FRACTION),
            ("saturated units", SATURATED_FRACTION),
        )
    }
    return layout
