import sys

# Before anything else: AtomMQ needs 3.11, and an older Python would fail on import with a
# traceback instead of saying so.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit("AtomMQ needs Python 3.11 or newer; %s is %s" % (sys.executable, sys.version.split()[0]))  # noqa: UP031

from atommq.cli import main  # noqa: E402

sys.exit(main())
