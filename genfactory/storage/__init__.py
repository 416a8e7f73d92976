"""The results store.

- `models`: the schema, once (the models are also the records callers get back);
- `db`: engines, SQLite tuning, Alembic upgrades on start (`migrations/`);
- `repository`: the `Repository` object and the module functions over the default one,
  its queries split by what they touch: `jobs`, `slots`, `images`, `queue`, over `base`
  (sessions, `NotFound`, `TransitionError`, compare-and-set).
"""
