"""Prefect tasks, one step each, and the step functions they run (docs/SPEC.md §1, §4-§6).

A job: `initialize` (initialize-job, resume-job) → per slot `pipeline` (generate/<n>, which
runs `generate` and then an image/<n>-<i> task per image) whose image runs `quality` →
`process` (the file edge in `image_files`, run in the engine's process pool) → `metadata` →
`approval`; then `finish`
(finish-job). Beside jobs: `retry` (retry-images), `rerun` (rerun-jobs), `export`.
What the steps run on (runtime, limits, pool, options, progress) lives in `genfactory.engine`.
"""
