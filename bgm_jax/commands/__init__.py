"""User-facing inference commands: ``bgm-jax images``, ``bgm-jax video`` and ``bgm-jax bench``.

Each module provides ``add_arguments(parser)`` and ``run(args) -> int`` for ``bgm_jax.cli`` and keeps
its heavy imports (jax, av) inside functions. Shared pieces:

- ``common``: the model/settings arguments and loading, random weights, sizes, progress bars;
- ``render``: model outputs to the pixels that get written (uint8 on the device, or on the host).

See docs/inference.md.
"""
