"""``python -m lab``: run a simulated iDRAC fleet in the foreground."""

from lab.runner import main

raise SystemExit(main())
