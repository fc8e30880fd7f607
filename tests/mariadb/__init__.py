"""A real MariaDB server for tests: Debian's mariadb-server, a temporary
datadir, its own port and socket, stopped cleanly. See server.py."""

from .server import FREEPBX_CDR_TABLE, MariaDB, MariaDBError, unavailable_reason

__all__ = ["FREEPBX_CDR_TABLE", "MariaDB", "MariaDBError", "unavailable_reason"]
