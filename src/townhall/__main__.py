import sys

from townhall.cli import main

sys.exit(main())
