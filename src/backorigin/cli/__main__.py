"""``python -m backorigin.cli``: the same as the ``backorigin`` command."""

from backorigin.cli.main import main

main()
