"""``python -m meshnode.cli``: the same as the ``meshnode`` command."""

import sys

from meshnode.cli.commands import main

sys.exit(main())
