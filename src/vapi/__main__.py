import sys

from vapi.cli import main

sys.exit(main())
