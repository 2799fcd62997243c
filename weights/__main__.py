"""``python -m <pack>.weights ...``: the same command as ``python -m <pack> weights ...``."""
import sys

from .fetch import main

sys.exit(main(sys.argv[1:]))
