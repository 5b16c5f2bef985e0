import sys

from posetr.cli import main

sys.exit(main())
