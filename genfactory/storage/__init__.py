"""The results store: SQLAlchemy models, engine/migrations, and the repository of queries."""
