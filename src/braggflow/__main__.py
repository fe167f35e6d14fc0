import sys

from braggflow.cli import main

sys.exit(main())
