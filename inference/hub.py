"""A trained PCatModel as a Hugging Face Hub folder: huggingface_hub's own save_pretrained,
push_to_hub and from_pretrained, through `PyTorchModelHubMixin`.

    from inference.hub import PCatHubModel, save_pretrained
    save_pretrained(load_model("best.ckpt"), "my_model")       # config.json, model.safetensors, README.md
    PCatHubModel.from_pretrained("my_model").push_to_hub("me/catsdogs-mlp")
    model = PCatHubModel.from_pretrained("me/catsdogs-mlp")    # or: models.load_pretrained(...)

The mixin writes model.safetensors; config.json is written here, so that it also records
the weights' sha256 and the project version, which `models.pretrained` checks on every
load; loading goes through `models.pretrained` too, so a Hub download is checked the same
way and is never unpickled (the mixin would fall back to a pytorch_model.bin pickle).
Kept out of `models`: importing huggingface_hub's mixin costs ~0.3 s that loading does
not need.
"""

import json
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, PyTorchModelHubMixin

from models import PROJECT_VERSION, PCatModel
from models.pretrained import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_FORMAT,
    WEIGHTS_NAME,
    ModelFileError,
    file_sha256,
    load_pretrained,
)

CARD_TEMPLATE = (Path(__file__).with_name("model_card.md.jinja")).read_text(encoding="utf-8")


class PCatHubModel(
    PCatModel,
    PyTorchModelHubMixin,
    library_name="catsdogs-zoo",
    pipeline_tag="image-classification",
    tags=["cats-vs-dogs", "mlp", "image-classification"],
    model_card_template=CARD_TEMPLATE,
):
    """PCatModel plus the mixin's save_pretrained / push_to_hub / from_pretrained."""

    @classmethod
    def from_model(cls, model: PCatModel) -> "PCatHubModel":
        """The same network and weights, with the Hub methods."""
        hub_model = cls(**model.config)
        hub_model.load_state_dict(model.state_dict())
        return hub_model.train(model.training)

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)  # model.safetensors (safetensors.torch.save_model)
        config = {
            **self.config,  # PCatModel's arguments: what from_pretrained passes back to __init__
            "project_version": PROJECT_VERSION,
            "weights_format": WEIGHTS_FORMAT,
            "model_sha256": file_sha256(save_directory / WEIGHTS_NAME),
        }
        # Written here, the mixin leaves it as it is.
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, **options: Any) -> "PCatHubModel":
        # `options` also holds config.json's arguments, which load_pretrained reads itself.
        hub_options = {
            name: options[name] for name in ("cache_dir", "force_download", "local_files_only", "token")
        }
        return cls.from_model(load_pretrained(model_id, revision=revision, **hub_options))

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The mixin's card, from our template, with the model's own config filled in; with
        `test_acc`, `test_auroc` and `dataset` the results also go into the card's metadata
        (`model-index`), where the Hub shows them and tests read them back."""
        params = sum(p.numel() for p in self.network.parameters())
        card = super().generate_model_card(*args, **{"config": self.config, "params": params, **kwargs})
        if "test_acc" in kwargs:
            card.data.model_name = kwargs.get("name", "catsdogs-zoo")
            card.data.eval_results = [
                EvalResult(
                    task_type="image-classification",
                    dataset_type=kwargs["dataset"],
                    dataset_name=kwargs["dataset"],
                    dataset_split="test",
                    metric_type=metric,
                    metric_value=float(kwargs[key]),
                )
                for metric, key in (("accuracy", "test_acc"), ("roc_auc", "test_auroc"))
            ]
        return card


def save_pretrained(model: PCatModel, folder: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write `model` as a new weights folder; `card` fills in the model card's training facts.

    The folder is written beside its final name and renamed when whole, so a folder that
    exists is always complete; an existing non-empty folder is refused, never overwritten.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ModelFileError(f"'{folder}' already exists and is not an empty folder; pass a new folder")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        card = {"load_as": folder.as_posix(), **(card or {})}  # the card's commands name the folder
        PCatHubModel.from_model(model).save_pretrained(partial, model_card_kwargs=card)
        if folder.exists():
            folder.rmdir()  # empty, checked above
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


__all__ = ["CARD_NAME", "PCatHubModel", "save_pretrained"]
