#!/usr/bin/env python3
"""The image's HEALTHCHECK: exit 0 when the API in this container answers ``/health``.

Standard library only (the slim image has no curl). The port is the API's: ``WFE_PORT``,
else the seed's ``PORT``, else 8000."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("WFE_PORT") or os.environ.get("PORT") or "8000"
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {url} answered {response.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
