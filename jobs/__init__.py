"""Entry points: the CLI, the Ray job main and the nightly launcher."""

import time

# When the command started: every entry point imports this package first, so the summary
# can report the whole command (Ray start-up and listing included), not the run alone.
STARTED = time.monotonic()
