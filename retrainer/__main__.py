"""``python -m retrainer``: run the retrainer service (same as ``driftline retrainer``)."""

from __future__ import annotations

from retrainer.cli import main

if __name__ == "__main__":
    main()
