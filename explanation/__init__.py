"""Explain one prediction: the article's Z = W x + b, layer by layer, for one photo.

walk.py computes the numbers from the model's own forward pass; text.py and html.py
only present them. The live page (explain.py --serve) is server.py with its page/ folder:
live.py turns walk.py's numbers into its JSON, ablation.py changes a copy of the network.
"""

from explanation.html import first_layer_templates, render_html
from explanation.text import render_text
from explanation.walk import Explanation, explain_file, explain_image

__all__ = [
    "Explanation",
    "explain_file",
    "explain_image",
    "first_layer_templates",
    "render_html",
    "render_text",
]
