"""Images: record a generation's images, change their status, approve with the
near-duplicate check, list and export them, keep their history of attempts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.orm import Session

from genfactory.statuses import (
    IMAGE_TRANSITIONS,
    OPEN_IMAGE_STATUSES,
    SLOT_TRANSITIONS,
    ImageStatus,
    SlotStatus,
)
from genfactory.storage.base import (
    StatusChange,
    StoreBase,
    cas,
    cas_returning,
    connection_of,
    fetch,
    get_row,
    update_returning,
)
from genfactory.storage.models import GeneratedImage, GenerationSlot, ImageRecord, updatable

#: What `update_image` / `transition_image` may set (the status only by a transition).
IMAGE_FIELDS = updatable(GeneratedImage)

#: Held while approving on PostgreSQL, so near-duplicate twins approved by two processes at
#: once are judged one after the other (SQLite's BEGIN IMMEDIATE serialises writers already).
_PG_APPROVAL_LOCK = 7_311_043


def _approved_in(scope: int | None) -> Any:
    """Approved images with a hash, of one execution (`scope`) or the whole store."""
    rows = GeneratedImage.__table__.c
    condition = (rows.phash.is_not(None)) & (rows.status == ImageStatus.APPROVED)
    if scope is not None:
        condition = condition & (rows.execution_id == scope)
    return condition


@dataclass(frozen=True)
class _HashSet:
    """The approved (id, hash) of one scope as read at one moment, with the fingerprint of
    that moment: how many, the sum of their ids and the newest `updated_at`."""

    hashes: dict[int, str]
    count: int
    id_sum: int
    latest: datetime | None


class ApprovedHashCache:
    """The approved hashes of each scope, read incrementally: the near-duplicate checks of a
    job with n images read O(n) rows in all, not O(n²).

    Every read first asks the store for the scope's fingerprint (count, sum of ids, newest
    `updated_at`: one indexed aggregate). Unchanged, the cached hashes are the store's; changed,
    only the rows updated since the cached newest are read, and the merge is used when its own
    fingerprint matches; anything else (a row deleted or no longer approved, a clock that went
    back) reads the scope again in full."""

    def __init__(self) -> None:
        self._sets: dict[int | None, _HashSet] = {}
        self._lock = threading.Lock()

    def read(self, session: Session | Connection, scope: int | None) -> dict[int, str]:
        """The approved (id -> hash) of `scope`, exactly as `session` sees the store."""
        rows = GeneratedImage.__table__.c
        condition = _approved_in(scope)
        fingerprint = select(
            func.count(), func.coalesce(func.sum(rows.id), 0), func.max(rows.updated_at)
        ).where(condition)
        count, id_sum, latest = connection_of(session).execute(fingerprint).one()
        with self._lock:
            cached = self._sets.get(scope)
        if cached is not None and (cached.count, cached.id_sum, cached.latest) == (
            count,
            id_sum,
            latest,
        ):
            return cached.hashes
        hashes: dict[int, str] | None = None
        if cached is not None and cached.latest is not None:
            newer = select(rows.id, rows.phash).where(condition, rows.updated_at >= cached.latest)
            merged = {**cached.hashes}
            for image_id, phash in connection_of(session).execute(newer.order_by(rows.updated_at)):
                merged[image_id] = str(phash)
            if len(merged) == count and sum(merged) == id_sum:
                hashes = merged
        if hashes is None:
            everything = select(rows.id, rows.phash).where(condition)
            ordered = everything.order_by(rows.updated_at, rows.id)
            hashes = {i: str(h) for i, h in connection_of(session).execute(ordered)}
        self.remember(scope, _HashSet(hashes, count, id_sum, latest))
        return hashes

    def remember(self, scope: int | None, entry: _HashSet) -> None:
        with self._lock:
            self._sets[scope] = entry

    def added(self, scope: int | None, image_id: int, phash: str, updated_at: datetime) -> None:
        """After a committed approval that read the scope in its own serialised transaction:
        the scope is what was read plus this image."""
        with self._lock:
            cached = self._sets.get(scope)
            if cached is None or image_id in cached.hashes:
                return
            if cached.latest is not None and updated_at < cached.latest:
                return  # a clock behind the store's: leave it to the next fingerprint
            hashes = {**cached.hashes, image_id: phash}
            self._sets[scope] = _HashSet(
                hashes, cached.count + 1, cached.id_sum + image_id, updated_at
            )


class Images(StoreBase):
    """The image queries of the repository."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        #: The near-duplicate checks' view of the approved hashes, per scope.
        self.hash_cache = ApprovedHashCache()

    def add_image(
        self,
        /,
        *,
        execution_id: int,
        slot: int,
        image_index: int,
        generation_prompt: str,
        temp_image_path: str,
        **fields: Any,
    ) -> ImageRecord:
        """Record one downloaded image, status `generated` (see `add_images`)."""
        image = {
            "image_index": image_index,
            "generation_prompt": generation_prompt,
            "temp_image_path": temp_image_path,
            **fields,
        }
        return self.get_image(self.add_images(execution_id, slot, [image])[0])

    def add_images(
        self,
        execution_id: int,
        slot: int,
        images: Sequence[dict[str, Any]],
        *,
        slot_id: int | None = None,
        slot_fields: dict[str, Any] | None = None,
    ) -> list[int]:
        """Record all images of one generation in one transaction (all or none), status
        `generated` unless a dict says otherwise; each dict holds the `add_image` fields. With
        `slot_id`, the slot becomes `generated` in the same transaction. Returns the ids in
        order."""
        with self._writing() as s:
            rows = [
                GeneratedImage(
                    execution_id=execution_id,
                    slot=slot,
                    **{"status": ImageStatus.GENERATED, **image},
                )
                for image in images
            ]
            s.add_all(rows)
            s.flush()
            if slot_id is not None:
                cas(
                    s,
                    StatusChange(
                        GenerationSlot,
                        SLOT_TRANSITIONS,
                        slot_id,
                        SlotStatus.GENERATING,
                        SlotStatus.GENERATED,
                        "slot",
                        {"error": None, "error_code": None, **(slot_fields or {})},
                    ),
                )
            return [row.id for row in rows]

    def get_image(self, image_id: int) -> ImageRecord:
        with self._read_tx() as s:
            return fetch(s, GeneratedImage, image_id, "image")

    def list_images(
        self,
        *,
        execution_id: int | None = None,
        status: str | None = None,
        slot: int | None = None,
        limit: int | None = None,
    ) -> list[ImageRecord]:
        with self._reading() as s:
            query = select(GeneratedImage).order_by(
                GeneratedImage.execution_id, GeneratedImage.slot, GeneratedImage.image_index
            )
            if execution_id is not None:
                query = query.where(GeneratedImage.execution_id == execution_id)
            if status:
                query = query.where(GeneratedImage.status == status)
            if slot is not None:
                query = query.where(GeneratedImage.slot == slot)
            if limit:
                query = query.limit(limit)
            return list(s.scalars(query))

    def update_image(self, /, image_id: int, **fields: Any) -> ImageRecord:
        """Update an image row's data; only the fields the pipeline owns may change, and its
        status only through `transition_image`."""
        unknown = set(fields) - IMAGE_FIELDS  # `status` is FIXED: never in IMAGE_FIELDS
        if unknown:
            raise ValueError(f"cannot update image fields {sorted(unknown)}")
        with self._write_tx() as s:
            return update_returning(s, GeneratedImage, image_id, "image", fields)

    def transition_image(
        self, /, image_id: int, expected: str | Collection[str], new: ImageStatus, **fields: Any
    ) -> ImageRecord:
        """Change an image's status by compare-and-set (see `statuses.IMAGE_TRANSITIONS`), with
        the data that goes with it; raises TransitionError when the image was not `expected`."""
        unknown = set(fields) - IMAGE_FIELDS
        if unknown:
            raise ValueError(f"cannot update image fields {sorted(unknown)}")
        with self._write_tx() as s:
            return cas_returning(
                s,
                StatusChange(
                    GeneratedImage, IMAGE_TRANSITIONS, image_id, expected, new, "image", fields
                ),
            )

    def open_images(self, execution_id: int) -> list[ImageRecord]:
        """Images of an execution the job engine has not finished (generated, qc_passed,
        processed), in slot order."""
        return self._open_rows(
            GeneratedImage,
            execution_id,
            OPEN_IMAGE_STATUSES,
            GeneratedImage.slot,
            GeneratedImage.image_index,
        )

    def approve_image(
        self,
        /,
        image_id: int,
        judge: Callable[[list[tuple[int, str]]], int | None] | None,
        scope_execution_id: int | None,
        *,
        expected: str = ImageStatus.PROCESSED,
        rejected: ImageStatus = ImageStatus.QC_FAILED,
        **fields: Any,
    ) -> tuple[ImageRecord, int | None]:
        """Approve a `processed` image (setting `fields`) unless `judge` finds it a
        near-duplicate of an approved one (then `qc_failed`): (the image, the id it duplicates
        or None). `judge` gets the (id, hash) of the approved images in scope. The check and
        the approval are one transaction, serialised across processes (an advisory lock on
        PostgreSQL, BEGIN IMMEDIATE on SQLite), so two near-twins approved at once cannot both
        pass."""
        approved_hash: str | None = None
        with self._write_tx() as s:
            if judge is not None and s.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPROVAL_LOCK})
            duplicate_of = None
            if judge is not None:
                earlier = self.hash_cache.read(s, scope_execution_id)
                duplicate_of = judge([(i, h) for i, h in earlier.items() if i != image_id])
            if duplicate_of is not None:
                values: dict[str, Any] = {"qc_reason": f"near-duplicate of {duplicate_of}"}
                new = rejected
            else:
                values = {"error": None, "error_code": None, **fields}
                new = ImageStatus.APPROVED
            row = cas_returning(
                s,
                StatusChange(
                    GeneratedImage, IMAGE_TRANSITIONS, image_id, expected, new, "image", values
                ),
            )
            approved_hash = row.phash if judge is not None and duplicate_of is None else None
        if approved_hash:
            # Committed, and the read above was serialised with every other approval.
            self.hash_cache.added(scope_execution_id, row.id, approved_hash, row.updated_at)
        return row, duplicate_of

    def approved_hashes(self, execution_id: int | None) -> list[tuple[int, str]]:
        """(image id, perceptual hash) of approved images, of one execution or the whole
        store, oldest first."""
        with self._read_tx() as s:
            return list(self.hash_cache.read(s, execution_id).items())

    def iter_images(
        self, execution_id: int, *, status: str | None = None, batch: int = 500
    ) -> Iterator[ImageRecord]:
        """An execution's images in `list_images` order, read `batch` rows at a time, so an
        export of a 10,000-image job holds one batch of rows, not all of them."""
        offset = 0
        while True:
            with self._reading() as s:
                query = (
                    select(GeneratedImage)
                    .where(GeneratedImage.execution_id == execution_id)
                    .order_by(GeneratedImage.slot, GeneratedImage.image_index, GeneratedImage.id)
                    .offset(offset)
                    .limit(batch)
                )
                if status:
                    query = query.where(GeneratedImage.status == status)
                rows = list(s.scalars(query))
            yield from rows
            if len(rows) < batch:
                return
            offset += batch

    def add_image_history(self, image_id: int, entry: dict[str, Any]) -> None:
        """Append one attempt (retry or manual approval) to an image's history."""
        with self._writing() as s:
            row = get_row(s, GeneratedImage, image_id, "image")
            row.history = [*(row.history or []), entry]
