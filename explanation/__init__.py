"""Explain one prediction: the article's Z = W x + b, layer by layer, for one photo.

walk.py computes the numbers from the model's own forward pass; text.py tells them in
words. The page (page/) shows them in the browser, served live by server.py (explain.py
--serve) or written to one file by static_page.py (--html): live.py turns walk.py's
numbers into its JSON, ablation.py changes a copy of the network.
"""

from explanation.text import render_text
from explanation.walk import Explanation, explain_file, explain_image

__all__ = ["Explanation", "explain_file", "explain_image", "render_text"]
