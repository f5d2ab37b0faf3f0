"""``python -m forecast_platform.cli``: the same command as ``forecast-platform``."""

import sys

from forecast_platform.cli import main

sys.exit(main())
