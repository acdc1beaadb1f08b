"""`python -m client`: the same as the `llm-ide` command."""
import sys

from client.cli import main

sys.exit(main())
