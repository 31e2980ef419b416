"""The PostgreSQL sink: versioned migrations of the records' tables (`migrations`), the
upserts (`tables`, `writer`) and the loop that drains the outbox into them (`runner`).
The outbox itself (what writers append, how it is read and settled in Redis) is in
processors.outbox*, so the API can show the sink's figures without a database driver.
"""

from sink.database import DatabaseUnreachable, apply_migrations, check_schema, schema_status
from sink.migrations import SchemaBehind, package_version
from sink.runner import Sink, serve_sink

__all__ = ["DatabaseUnreachable", "SchemaBehind", "Sink", "apply_migrations", "check_schema", "package_version",
           "schema_status", "serve_sink"]
