"""``python -m egi_hub`` runs the ``egi-hub`` command."""

import sys

from .cli import main

sys.exit(main())
