"""The durable store: SQLAlchemy Core tables, a group-commit writer, queries, migrations."""
