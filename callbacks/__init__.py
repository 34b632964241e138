"""Lightning callbacks of the project: NetworkInsight shows in TensorBoard what each layer learns."""

from callbacks.network_insight import NetworkInsight

__all__ = ["NetworkInsight"]
