//! SQLite: schema, migrations and ingestion. The controller is the only writer.
