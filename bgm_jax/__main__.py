import sys

from bgm_jax.cli import main

sys.exit(main())
