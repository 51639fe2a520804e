import sys

from brushwork.commands.entry import main

sys.exit(main())
