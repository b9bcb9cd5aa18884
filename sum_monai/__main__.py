"""``python -m sum_monai`` is the same as the ``sum-monai`` command."""

import sys

from sum_monai.cli import main

sys.exit(main())
