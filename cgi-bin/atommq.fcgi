#!/usr/bin/env python3
"""AtomMQ as a FastCGI server (flup). Copy cgi-bin/ and atommq/ side by side; see README.md."""

import os
import sys

# Before anything else: AtomMQ needs 3.11, and an older Python would fail on import with a
# traceback instead of saying so.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit("AtomMQ needs Python 3.11 or newer; %s is %s" % (sys.executable, sys.version.split()[0]))  # noqa: UP031
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from atommq.gateway import run_fastcgi  # noqa: E402

sys.exit(run_fastcgi(sys.argv[1:]))
