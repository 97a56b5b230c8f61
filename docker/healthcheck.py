"""Container health check without curl: exit 0 when URL answers 200 within the timeout.

    python healthcheck.py [URL]     (default: $STUDIO_HEALTHCHECK_URL, else http://127.0.0.1:8000/ready)
"""

import os
import sys
import urllib.error
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STUDIO_HEALTHCHECK_URL", "http://127.0.0.1:8000/ready")
request = urllib.request.Request(url)
token = os.environ.get("API_TOKEN")
if token and not url.endswith("/health"):  # /health is open; /ready and the rest need the token when one is set
    request.add_header("Authorization", f"Bearer {token}")
try:
    with urllib.request.urlopen(request, timeout=float(os.environ.get("STUDIO_HEALTHCHECK_TIMEOUT", "4"))) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError, ValueError) as exc:
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
