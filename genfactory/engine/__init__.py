"""What runs beside a job's tasks (tasks may import it; it imports no task or flow).

- `runtime`: a job's settings, providers, usage and stop flag in this process.
- `steps`: what every step shares: task options, the retry rule, step logging, failing an image.
- `pool`: the process pool heavy image work runs in.
- `limits`: per-service concurrency limits; `secrets`: API keys from Prefect Secret blocks.
- `control`: the store-held job control (stop requests, heartbeat); `recovery`: jobs whose
  worker died; `lifecycle`: a job's end (runtime closed, never left `running`).
- `queue`: claiming queued retry and rerun batches; `artifacts`: the job's Prefect artifacts
  (keys, the live progress artifact).
- `server`: the local Prefect server genfactory reuses.
"""
