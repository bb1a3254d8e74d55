import sys

from Tests.emulators.run import main

sys.exit(main())
