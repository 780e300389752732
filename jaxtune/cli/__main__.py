"""``python -m jaxtune.cli``: the ``jaxtune`` command."""

import sys

from jaxtune.cli import main

sys.exit(main())
