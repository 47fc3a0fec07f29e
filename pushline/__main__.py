import sys

from pushline.cli import main

sys.exit(main())
