"""Generation slots: one prompt sent to the image provider each, the unit a resume picks up."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select

from genfactory.statuses import SLOT_TRANSITIONS, SlotStatus
from genfactory.storage.base import StatusChange, StoreBase, cas, fetch, update_row
from genfactory.storage.models import GenerationSlot, SlotRecord, updatable

#: What `update_slot` / `transition_slot` may set (the slot's status only by a transition).
SLOT_FIELDS = updatable(GenerationSlot)


def _check_slot_fields(fields: Collection[str]) -> None:
    unknown = set(fields) - SLOT_FIELDS
    if unknown:
        raise ValueError(f"cannot update slot fields {sorted(unknown)}")


class Slots(StoreBase):
    """The slot queries of the repository."""

    def add_slots(self, execution_id: int, slots: Sequence[dict[str, Any]]) -> list[int]:
        """Insert the generation slots of an execution; returns their ids in slot order."""
        with self._writing() as s:
            rows = [
                GenerationSlot(execution_id=execution_id, status=SlotStatus.PENDING, **slot)
                for slot in slots
            ]
            s.add_all(rows)
            s.flush()
            return [row.id for row in rows]

    def get_slot(self, slot_id: int) -> SlotRecord:
        with self._read_tx() as s:
            return fetch(s, GenerationSlot, slot_id, "slot")

    def get_slot_by_number(self, execution_id: int, slot: int) -> SlotRecord | None:
        """Slot number `slot` of an execution, or None."""
        with self._reading() as s:
            return s.scalars(
                select(GenerationSlot).where(
                    GenerationSlot.execution_id == execution_id, GenerationSlot.slot == slot
                )
            ).first()

    def list_slots(self, execution_id: int) -> list[SlotRecord]:
        with self._reading() as s:
            return list(
                s.scalars(
                    select(GenerationSlot)
                    .where(GenerationSlot.execution_id == execution_id)
                    .order_by(GenerationSlot.slot)
                )
            )

    def update_slot(self, /, slot_id: int, **fields: Any) -> None:
        """Update a slot's data; its status changes only through `transition_slot`."""
        _check_slot_fields(fields)
        with self._write_tx() as s:
            update_row(s, GenerationSlot, slot_id, fields)

    def transition_slot(
        self,
        /,
        slot_id: int,
        expected: str | Collection[str],
        new: SlotStatus,
        *,
        count_attempt: bool = False,
        **fields: Any,
    ) -> None:
        """Change a slot's status by compare-and-set (see `statuses.SLOT_TRANSITIONS`)."""
        _check_slot_fields(fields)
        values: dict[str, Any] = dict(fields)
        if count_attempt:
            values["attempts"] = GenerationSlot.attempts + 1
        with self._write_tx() as s:
            cas(
                s,
                StatusChange(
                    GenerationSlot, SLOT_TRANSITIONS, slot_id, expected, new, "slot", values
                ),
            )

    def open_slots(self, execution_id: int) -> list[SlotRecord]:
        """Slots of an execution not yet generated or failed, in slot order."""
        return self._open_rows(
            GenerationSlot,
            execution_id,
            (SlotStatus.PENDING, SlotStatus.GENERATING),
            GenerationSlot.slot,
        )
