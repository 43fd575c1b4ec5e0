"""Exit 0 when a Kafka broker answers a metadata request, 1 otherwise (used by make targets)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka.admin import AdminClient


def broker_answers(bootstrap: str, timeout: float) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(2.0, max(0.5, deadline - time.monotonic())))
            return True
        except Exception:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    )
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    return 0 if broker_answers(args.bootstrap, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
