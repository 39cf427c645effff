"""``python -m camkit.cli …`` (what ``torchrun -m camkit.cli export …`` runs)."""

import sys

from camkit.cli import main

sys.exit(main())
