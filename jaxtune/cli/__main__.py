"""``python -m jaxtune.cli``: the ``jaxtune`` command."""

from jaxtune.cli import console

console()
