"""``python -m gps_env.bench ...``: the ``gps-env`` command."""

from gps_env.bench.cli import main

raise SystemExit(main())
