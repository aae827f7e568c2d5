import sys

from minicomp.cli import main

sys.exit(main())
