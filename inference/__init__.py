"""Predict p_cat for image files with a trained checkpoint: the Python API behind predict.py."""

from inference.predictor import CatsDogsPredictor, Prediction

__all__ = ["CatsDogsPredictor", "Prediction"]
