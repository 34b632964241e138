"""The task's one convention: cat is the positive class, label 1; p_cat = sigmoid(z).

Every part of the project (folder layouts, metrics, predictions, explanations) takes
its labels and class names from here.
"""

CAT, DOG = 1, 0
CLASS_NAMES = ("dog", "cat")  # indexed by label


def class_name(p_cat: float, threshold: float = 0.5) -> str:
    """The article's decision: p_cat >= threshold means "cat"."""
    return CLASS_NAMES[CAT if p_cat >= threshold else DOG]
