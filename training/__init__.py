"""What train.py adds around Lightning: the command line (cli.py), resuming a run from its
own config (resume.py), crash-safe checkpoints (checkpointing.py) and the TensorBoard
pictures of every layer (network_insight.py, tensorboard_pictures.py)."""
