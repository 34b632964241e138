"""The HParams tab: one row per run, its hyperparameters and the metrics that judge it.

TensorBoard keeps the *first* experiment description of a run, so it is written once,
declaring every metric column up front; the values are ordinary scalars under those tags,
logged whenever they are known (best val/acc after fit, test/acc after test).
"""

from collections.abc import Iterable, Mapping

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams


def flatten_params(params: Mapping, prefix: str = "") -> dict[str, int | float | str | bool]:
    """{"network_kwargs": {"hidden_dims": [512, 256]}} -> {"network_kwargs/hidden_dims": "[512, 256]"}."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{prefix}{key}/"))
        else:  # the HParams plugin shows numbers, strings and booleans; lists and None as text
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def run_hparams(trainer, pl_module) -> dict:
    """The data's and the model's hyperparameters, as the run was configured."""
    params = {}
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        params.update(datamodule.hparams_initial)
    params.update(pl_module.hparams_initial)
    return {key: value for key, value in params.items() if not key.startswith("_")}  # CLI bookkeeping


def write_experiment(writer: SummaryWriter, params: Mapping, metric_tags: Iterable[str]) -> None:
    experiment, session_start, session_end = hparams(flatten_params(params), dict.fromkeys(metric_tags, 0.0))
    file_writer = writer._get_file_writer()  # SummaryWriter has no public way to add a raw summary
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
