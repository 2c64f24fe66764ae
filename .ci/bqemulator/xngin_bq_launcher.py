"""Start the bqemulator BigQuery emulator offline.

bqemulator runs `INSTALL spatial` (a download) at start and exits when that fails; GEOGRAPHY is
not needed by xngin, so the spatial loader is replaced by a no-op. Keep this directory free of
files named like standard-library modules: the emulator would import them instead.
"""
import sys

import bqemulator.storage.engine as engine

engine.DuckDBEngine._load_spatial = lambda self: None

import bqemulator.cli  # noqa: E402

sys.exit(bqemulator.cli.main())
