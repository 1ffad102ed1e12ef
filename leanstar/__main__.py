import sys

from leanstar.cli import main

sys.exit(main())
