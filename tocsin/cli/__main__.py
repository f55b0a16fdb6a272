"""``python -m tocsin.cli``: the ``tocsin`` command."""

from .main import main

main()
