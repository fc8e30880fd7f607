"""`python -m asterisk_miitel.miitel.standin --port 0 --data-dir DIR`."""

from . import main

raise SystemExit(main())
