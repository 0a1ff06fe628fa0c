"""``python -m langfusion.tools.cli``: the ``langfusion`` command."""

import sys

from langfusion.tools.cli import main

sys.exit(main())
