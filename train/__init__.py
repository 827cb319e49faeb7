"""The training application for bgm-jax: on-device augmentation, the paper's losses and the trainer.

Run from a checkout (``python -m train...`` from the repository root); it is not part of the installed
``bgm_jax`` package. See docs/training.md.
"""
