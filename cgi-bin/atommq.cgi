#!/usr/bin/env python3
"""AtomMQ as a CGI script. Copy cgi-bin/ and atommq/ side by side; see README.md."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from atommq.gateway import run_cgi  # noqa: E402

sys.exit(run_cgi())
