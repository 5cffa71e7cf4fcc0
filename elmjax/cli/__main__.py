"""``python -m elmjax.cli ...`` runs the ``elmjax`` command."""

import sys

from elmjax.cli import main

sys.exit(main())
