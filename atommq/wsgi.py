"""AtomMQ for any WSGI server: `application`, built on import from the ATOMMQ_* environment and
the ATOMMQ_CONFIG file (gunicorn atommq.wsgi:application, waitress-serve atommq.wsgi:application,
Phusion Passenger through passenger_wsgi.py). Knows no server: each mounts it where it is told.

No wrapper sets wsgi.input_terminated: gunicorn and waitress set it themselves (they decode a
chunked body and end the input there); a server that does not gets a 411 for a chunked body,
never a read that waits for an end of input that a kept-alive connection does not reach.
"""

from atommq.gateway import App, build_app

# Most requests that may wait for a message at once (max_waiters) unless ATOMMQ_MAX_WAITERS
# says otherwise. A waiting GET holds one of the server's threads (waitress has 4 unless told
# --threads) or, under Passenger, one of its processes (6 unless the host says otherwise):
# room is left for the publish that would answer them. Keep the setting below the threads.
MAX_WAITERS = 3

application: App = build_app({"max_waiters": str(MAX_WAITERS)})
