"""What runs beside a job's tasks: the store-held job control (stop requests, heartbeat),
recovery of jobs whose worker died, and the local Prefect server genfactory reuses."""
