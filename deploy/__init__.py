"""Ship a trained classifier: export it (deploy.exporters) and run the export with plain torch
or onnxruntime (deploy.exported_model), without Lightning or any training code.

Only the loading side is imported here: `import deploy` must stay free of Lightning, so a
serving process never pulls in the trainer. Exporting needs the checkpoint loader (which
does use Lightning): `from deploy.exporters import export_model`.
"""

from deploy.exported_model import (
    EXPORT_SUFFIXES,
    ExportedModel,
    ExportError,
    is_exported_model,
    load_checkpoint_pipeline,
    load_exported,
)
from deploy.pipeline import PCatPipeline

__all__ = [
    "EXPORT_SUFFIXES",
    "ExportError",
    "ExportedModel",
    "PCatPipeline",
    "is_exported_model",
    "load_checkpoint_pipeline",
    "load_exported",
]
