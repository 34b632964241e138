"""What wrote a checkpoint: read by the checkpoint loader without importing Lightning."""

PROJECT_VERSION = "0.1.0"  # keep equal to pyproject.toml's version (a test checks)
# Bump when a checkpoint written by this code would be misread by older code;
# models.checkpoint refuses files with a newer format than it knows.
CHECKPOINT_FORMAT = 1
