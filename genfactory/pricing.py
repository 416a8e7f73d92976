"""What a job will call and what it costs: pure functions of the settings and usage counters.

Three questions, one price list (`[pricing]`, every price editable):

- `planned_calls(settings, slots)`: the paid and free calls a job of `slots` generation slots
  makes at most on a first try (every image reaching QC, metadata and background removal);
- `estimate_cost(settings, calls_or_usage)`: USD per service plus `"total"`, from planned calls
  or from the providers' `Usage` counters of a finished (or running) job;
- `budget_exceeded(settings, usage, next_call)`: the reason to stop before the next paid call
  when `job.max_cost` would be passed, else None.

Planned calls use the kinds `tasks` (Midjourney), `images` (per-image generators),
`prompt_calls` and `vision_calls` (OpenAI chat), `credits` (remove.bg). Usage counters use what
the providers record: `cost` (Runware's own figure), tokens, `images`, `credits`, and
`ambiguous_creates` (a create that may have been charged counts as charged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genfactory.config import Settings
from genfactory.providers.registry import images_per_slot

Counts = Mapping[str, Mapping[str, float]]

MILLION = 1_000_000
#: remove.bg credits per image by `processing.remove_bg_size` (preview is a quarter credit).
REMOVEBG_CREDITS = {"preview": 0.25}


def _removebg_credits(settings: Settings) -> float:
    """remove.bg credits one image costs at `processing.remove_bg_size`."""
    return REMOVEBG_CREDITS.get(settings.processing.remove_bg_size, 1.0)


def _counts(calls_or_usage: Counts | Any) -> Counts:
    """Counts from planned calls, a `Usage`, or its snapshot."""
    return calls_or_usage.snapshot() if hasattr(calls_or_usage, "snapshot") else calls_or_usage


def call_of(settings: Settings, role: str) -> dict[str, dict[str, float]]:
    """What one call of `providers.<role>` is planned to cost, as calls per service and kind
    ({} for a free provider): the step asks the budget with it before making the call. An
    image call is one generation (a Midjourney task, or `images_per_slot` images)."""
    name = str(getattr(settings.providers, role))
    if role == "prompt" and name == "openai":
        return {"openai": {"prompt_calls": 1}}
    if role == "image" and name == "piapi":
        return {"piapi": {"tasks": 1}}
    if role == "image" and name in ("runware", "openai", "sdwebui"):
        return {name: {"images": images_per_slot(settings)}}
    if role in ("qc", "metadata") and name == "openai":
        return {"openai": {"vision_calls": 1}}
    if role == "background" and name == "removebg":
        credits = _removebg_credits(settings)
        return {"removebg": {"images": 1, "credits": credits}}
    return {}


def planned_calls(settings: Settings, slots: int) -> dict[str, dict[str, int]]:
    """Calls per service and kind a job of `slots` slots makes at most, without re-asks."""
    images = slots * images_per_slot(settings)
    vision_qc = settings.qc.run_quality_check and settings.providers.qc == "openai"
    # How many calls of each role: combined mode writes the metadata in the QC call itself.
    counts = {
        "prompt": slots,
        "image": slots,
        "qc": images if settings.qc.run_quality_check else 0,
        "metadata": images
        if settings.metadata.run_metadata_gen
        and not (settings.metadata.combined_with_qc and vision_qc)
        else 0,
        "background": images if settings.processing.remove_bg else 0,
    }
    calls: dict[str, dict[str, int]] = {}
    for role, times in counts.items():
        for service, kinds in call_of(settings, role).items():
            for kind, amount in kinds.items():
                if times and amount:
                    entry = calls.setdefault(service, {})
                    entry[kind] = entry.get(kind, 0) + round(times * amount)
    return calls


def estimate_cost(settings: Settings, calls_or_usage: Counts | Any) -> dict[str, float]:
    """USD per service, plus `"total"`, from planned calls or a `Usage` (or its snapshot)."""
    counts = _counts(calls_or_usage)
    costs = {
        service: round(_service_cost(settings, service, values), 6)
        for service, values in counts.items()
    }
    costs["total"] = round(sum(costs.values()), 6)
    return costs


def budget_exceeded(
    settings: Settings, usage: Counts | Any, next_call: Counts | None = None
) -> str | None:
    """Why the job must stop before `next_call` (e.g. `planned_calls(settings, 1)`), or None.

    The spent amount is estimated from the usage counters; with no `job.max_cost`, never stops.
    """
    budget = settings.job.max_cost
    if budget is None:
        return None
    spent = estimate_cost(settings, usage)["total"]
    upcoming = estimate_cost(settings, next_call)["total"] if next_call else 0.0
    if spent + upcoming <= budget + 1e-9:
        return None
    what = f" and the next call would cost ~${upcoming:.4f}" if upcoming else ""
    return (
        f"the job has spent an estimated ${spent:.4f}{what}, past job.max_cost = ${budget:g}; "
        "it stopped before spending more; raise job.max_cost (--max-cost) or edit [pricing] "
        "to go on"
    )


def _service_cost(settings: Settings, service: str, values: Mapping[str, float]) -> float:
    prices = settings.pricing
    get = values.get
    ambiguous = float(get("ambiguous_creates", 0))
    if service == "piapi":
        per_task = {
            "relax": prices.piapi_relax_per_task,
            "fast": prices.piapi_fast_per_task,
            "turbo": prices.piapi_turbo_per_task,
        }[settings.generation.process_mode]
        return (float(get("tasks", 0)) + ambiguous) * per_task
    if service == "runware":
        reported = float(get("cost", 0))
        per_slot = settings.job.variations * prices.runware_per_image
        if reported:
            return reported + ambiguous * per_slot
        return float(get("images", 0)) * prices.runware_per_image + ambiguous * per_slot
    if service == "openai":
        return _openai_cost(settings, values)
    if service == "removebg":
        credits = get("credits")
        if credits is None:  # no X-Credits-Charged header: the documented rate per image
            per_image = _removebg_credits(settings)
            credits = float(get("images", 0)) * per_image
        return float(credits) * prices.removebg_per_credit
    if service == "sdwebui":
        return float(get("images", 0)) * prices.sdwebui_per_image
    return 0.0


def _openai_cost(settings: Settings, values: Mapping[str, float]) -> float:
    prices = settings.pricing
    get = values.get
    per_in, per_out = prices.openai_input_per_million, prices.openai_output_per_million
    cost = 0.0
    # Planned: estimated tokens per call.
    cost += float(get("prompt_calls", 0)) * (
        prices.openai_prompt_input_tokens * per_in + prices.openai_prompt_output_tokens * per_out
    )
    cost += float(get("vision_calls", 0)) * (
        prices.openai_vision_input_tokens * per_in + prices.openai_vision_output_tokens * per_out
    )
    # Actual: the tokens the service reported.
    cost += float(get("prompt_tokens", 0)) * per_in + float(get("completion_tokens", 0)) * per_out
    cost /= MILLION
    image_tokens = float(get("image_output_tokens", 0))
    if image_tokens:
        cost += image_tokens * prices.openai_image_output_per_million / MILLION
        cost += float(get("image_input_tokens", 0)) * per_in / MILLION
    else:
        cost += float(get("images", 0)) * prices.openai_image_per_image
    cost += float(get("ambiguous_creates", 0)) * prices.openai_image_per_image
    return cost


def cost_rows(settings: Settings, counts: Counts | Any) -> list[tuple[str, str, str]]:
    """(service, calls, estimated cost) rows for the CLI: one per service and a total."""
    data = _counts(counts)
    costs = estimate_cost(settings, data)
    rows = []
    for service in sorted(data):
        values = data[service]
        shown = ", ".join(f"{kind} {amount:g}" for kind, amount in sorted(values.items()))
        rows.append((service, shown, f"${costs.get(service, 0.0):.4f}"))
    rows.append(("total", "", f"${costs['total']:.4f}"))
    return rows
