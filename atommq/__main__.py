import sys

from atommq.cli import main

sys.exit(main())
