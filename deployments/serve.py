"""Serve genfactory's job flow from this process, for users running a Prefect server.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m deployments.serve

Runs started from the UI then execute here; API keys come from this process's environment.
"""

from __future__ import annotations

from genfactory.flows import generate_job


def main() -> None:
    """Register the `generate-job/serve` deployment and run its flow runs until stopped."""
    generate_job.serve(
        name="serve",
        tags=["genfactory"],
        description="Turn keywords into finished images (parameters: the job settings).",
        limit=1,
    )


if __name__ == "__main__":
    main()
