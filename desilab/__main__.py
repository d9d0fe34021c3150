"""``python -m desilab`` is the same as the ``desilab`` command."""

import sys

from desilab.cli import main

sys.exit(main())
