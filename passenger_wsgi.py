"""AtomMQ under Phusion Passenger, which shared hosts' control panels run Python apps with.

In the panel's "Setup Python App": the application root is the folder that holds this file and
atommq/, the startup file passenger_wsgi.py, the entry point application; settings are the
panel's environment variables (ATOMMQ_DATABASE_URL, ATOMMQ_CONFIG, ...). Then install
requirements.txt in the app's virtualenv (the panel shows the command). See README.md.
"""

import os
import sys

# Before anything else: AtomMQ needs 3.11, and an older Python (a panel offers several) would
# fail on import with a traceback instead of saying so.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit("AtomMQ needs Python 3.11 or newer; %s is %s" % (sys.executable, sys.version.split()[0]))  # noqa: UP031
# Passenger loads this file by its path; atommq/ beside it is then importable wherever the
# process started.
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from atommq.wsgi import application  # noqa: E402, F401
