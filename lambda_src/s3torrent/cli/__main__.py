"""`python -m s3torrent.cli`, the same as the `s3torrent` command."""

import sys

from s3torrent.cli import main

sys.exit(main())
