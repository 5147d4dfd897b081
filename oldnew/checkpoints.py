"""The run's checkpoint saver: LangGraph's SQLite saver that stores a large value once.

LangGraph's ``AsyncSqliteSaver`` writes a checkpoint's whole state again with every
checkpoint: a task thread's task and requirements five times, the run thread's plan, scope and
task table with every step. This saver keeps the same tables and adds two:

- ``blobs``: a channel value of ``EXTERNAL_MIN`` serialized bytes or more, stored once per
  thread and content (its hash), compressed; the checkpoint row names it by hash;
- ``packed_writes``: the pending writes one task made on one checkpoint, in one compressed row
  (the stock ``writes`` table keeps a row, and an index entry, per channel written).

A checkpoint row of this format says so in its ``type`` (``FORMAT``) and is the checkpoint
without those values, compressed. Rows the stock saver wrote (a file made by an earlier
release) are read as they are, and a checkpoint that has writes in the stock table keeps
getting them there, so a run saved before goes on exactly where it was. What a read gives back
is what the stock saver gives: the same checkpoint, metadata, parent and pending writes, in the
same order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.checkpoint.sqlite.utils import search_where

from oldnew.errors import CheckpointsCorrupt

FORMAT = "oldnew-blobs:"
"""Prefix of the ``type`` of a checkpoint row this saver wrote; the serializer's own type
follows it (``oldnew-blobs:msgpack``)."""

EXTERNAL_MIN = 128
"""Serialized size from which a channel value goes to ``blobs`` (smaller ones stay inline)."""

_ZLIB = "zlib+"
"""Prefix of the ``type`` of a blob stored compressed."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    thread_id TEXT NOT NULL,
    hash BLOB NOT NULL,
    type TEXT NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (thread_id, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packed_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    writes BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id)
) WITHOUT ROWID;
"""

_KNOWN_MAX = 200_000
"""Blobs remembered as stored, at most (then the memory starts over)."""

_ROW = "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
WriteRow = tuple[str, str, str, bytes, str, int]
"""A pending write as stored: task id, channel, type, value, task path, index."""


class CheckpointSaver(AsyncSqliteSaver):
    """``AsyncSqliteSaver`` that stores each large channel value once, and writes packed.

    Opened like it: ``async with CheckpointSaver.from_conn_string(path) as saver``.
    """

    def __init__(self, conn: aiosqlite.Connection, *, serde: Any = None) -> None:
        """Wrap an open connection, as the stock saver does."""
        super().__init__(conn, serde=serde)
        self._own_tables = False
        self._stock_writes = True
        """Whether the stock ``writes`` table may hold rows (a file of an earlier release)."""
        self._stored: set[tuple[str, bytes]] = set()
        """Blobs known to be in the file (they never change): not compressed and sent again."""

    async def setup(self) -> None:
        """Create the stock tables, then this saver's own (idempotent)."""
        if self._own_tables:
            return
        await super().setup()
        async with self.lock:
            if not self._own_tables:
                await self.conn.executescript(_SCHEMA)
                await self.conn.commit()
                rows = await self.conn.execute_fetchall("SELECT 1 FROM writes LIMIT 1")
                self._stock_writes = bool(list(rows))
                self._own_tables = True

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint: its large values in ``blobs`` (once each), the rest in its row."""
        await self.setup()
        conf = config["configurable"]
        thread_id, checkpoint_ns = str(conf["thread_id"]), str(conf["checkpoint_ns"])
        inline: dict[str, Any] = {}
        refs: dict[str, bytes] = {}
        blobs: list[tuple[str, bytes, str, bytes]] = []
        for channel, value in checkpoint["channel_values"].items():
            type_, data = self.serde.dumps_typed(value)
            if len(data) < EXTERNAL_MIN:
                inline[channel] = value
                continue
            inline[channel] = None  # its place: channel_values read back in the same order
            digest = hashlib.blake2b(type_.encode() + b"\0" + data, digest_size=16).digest()
            refs[channel] = digest
            if (thread_id, digest) not in self._stored:
                blobs.append((thread_id, digest, *_compressed(type_, data)))
        type_, data = self.serde.dumps_typed(
            {"checkpoint": {**checkpoint, "channel_values": inline}, "blobs": refs}
        )
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False)
        async with self.lock:
            if blobs:
                await self.conn.executemany(
                    "INSERT OR IGNORE INTO blobs (thread_id, hash, type, blob) VALUES (?, ?, ?, ?)",
                    blobs,
                )
            await self.conn.execute(
                f"INSERT OR REPLACE INTO checkpoints ({_ROW}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    checkpoint_ns,
                    checkpoint["id"],
                    conf.get("checkpoint_id"),
                    FORMAT + type_,
                    zlib.compress(data),
                    meta.encode("utf-8", "ignore"),
                ),
            )
            await self.conn.commit()
            self._remember(thread_id, [b[1] for b in blobs])
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes on a checkpoint in one row, merged as the stock saver merges.

        Writes of special channels (errors, interrupts, resumes) replace what the task wrote
        before at their index; any other write is kept only where none was. A checkpoint with
        writes in the stock table (saved by an earlier release) gets them there as before.
        """
        await self.setup()
        conf = config["configurable"]
        key = (str(conf["thread_id"]), str(conf["checkpoint_ns"]), str(conf["checkpoint_id"]))
        if self._stock_writes and await self._has_stock_writes(key):
            await super().aput_writes(config, writes, task_id, task_path)
            return
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        new = [
            (WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
            for idx, (channel, value) in enumerate(writes)
        ]
        async with self.lock:
            rows = list(
                await self.conn.execute_fetchall(
                    "SELECT writes FROM packed_writes WHERE thread_id = ? AND checkpoint_ns = ? "
                    "AND checkpoint_id = ? AND task_id = ?",
                    (*key, task_id),
                )
            )
            held = {int(w[0]): w for w in _unpack(rows[0][0])} if rows else {}
            for idx, channel, type_, value in new:
                if replace or idx not in held:
                    held[idx] = [idx, channel, type_, value, task_path]
            await self.conn.execute(
                "INSERT OR REPLACE INTO packed_writes (thread_id, checkpoint_ns, "
                "checkpoint_id, task_id, writes) VALUES (?, ?, ?, ?, ?)",
                (*key, task_id, zlib.compress(ormsgpack.packb(list(held.values())))),
            )
            await self.conn.commit()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint ``config`` names (its latest without an id), or None."""
        await self.setup()
        thread_id = str(config["configurable"]["thread_id"])
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        query = f"SELECT {_ROW} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
        if checkpoint_id := get_checkpoint_id(config):
            query += "AND checkpoint_id = ?"
            params: tuple[str, ...] = (thread_id, checkpoint_ns, checkpoint_id)
        else:
            query += "ORDER BY checkpoint_id DESC LIMIT 1"
            params = (thread_id, checkpoint_ns)
        async with self.lock:
            rows = list(await self.conn.execute_fetchall(query, params))
            return await self._tuple(rows[0]) if rows else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Yield the checkpoints that match, newest first (as the stock saver does)."""
        await self.setup()
        where, params = search_where(config, filter, before)
        query = f"SELECT {_ROW} FROM checkpoints {where} ORDER BY checkpoint_id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params = (*params, limit)
        async with self.lock, self.conn.execute(query, params) as rows:
            async for row in rows:
                yield await self._tuple(row)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints, writes and blobs."""
        await super().adelete_thread(thread_id)
        async with self.lock:
            for table in ("blobs", "packed_writes"):
                await self.conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
            await self.conn.commit()
            self._stored = {known for known in self._stored if known[0] != thread_id}

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Walk the parent chain by ``aget_tuple`` (the stock fast path reads rows directly)."""
        return await BaseCheckpointSaver.aget_delta_channel_history(
            self, config=config, channels=channels
        )

    async def _has_stock_writes(self, key: tuple[str, str, str]) -> bool:
        async with self.lock:
            rows = await self.conn.execute_fetchall(
                "SELECT 1 FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                "AND checkpoint_id = ? LIMIT 1",
                key,
            )
            return bool(list(rows))

    def _remember(self, thread_id: str, hashes: list[bytes]) -> None:
        if len(self._stored) > _KNOWN_MAX:
            self._stored.clear()
        self._stored.update((thread_id, h) for h in hashes)

    async def _tuple(self, row: Any) -> CheckpointTuple:
        """Turn a checkpoint row into the tuple the stock saver returns for it (lock held)."""
        thread_id, checkpoint_ns, checkpoint_id, parent_id, type_, data, metadata = row
        refs: dict[str, bytes] = {}
        if type_ and type_.startswith(FORMAT):
            stored = self.serde.loads_typed((type_[len(FORMAT) :], zlib.decompress(data)))
            checkpoint = cast(Checkpoint, stored["checkpoint"])
            refs = stored["blobs"]
        else:
            checkpoint = self.serde.loads_typed((type_, data))
        values, writes = await self._values_and_writes(
            (thread_id, checkpoint_ns, checkpoint_id), set(refs.values())
        )
        if missing := sorted(ch for ch, h in refs.items() if h not in values):
            raise CheckpointsCorrupt(
                f"checkpoint {checkpoint_id} of thread {thread_id} names stored values "
                f"that are missing from its file (channels {', '.join(missing)}): "
                "restore the checkpoint file from a backup, or start the run over "
                "with 'oldnew resume --workspace <dir> --restart'"
            )
        checkpoint["channel_values"] |= {ch: values[h] for ch, h in refs.items()}
        return CheckpointTuple(
            {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint,
            cast(CheckpointMetadata, json.loads(metadata) if metadata is not None else {}),
            {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": parent_id,
                }
            }
            if parent_id
            else None,
            writes,
        )

    async def _values_and_writes(
        self, key: tuple[str, str, str], hashes: set[bytes]
    ) -> tuple[dict[bytes, Any], list[PendingWrite]]:
        """Read a checkpoint's stored values and its pending writes in one query."""
        parts = [
            "SELECT 'p', task_id, '', '', writes, '', 0 FROM packed_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
        ]
        params: list[Any] = [*key]
        if hashes:
            marks = ", ".join("?" * len(hashes))
            parts.append(
                f"SELECT 'b', hash, '', type, blob, '', 0 FROM blobs "
                f"WHERE thread_id = ? AND hash IN ({marks})"
            )
            params += [key[0], *hashes]
        if self._stock_writes:
            path = "task_path" if self._has_task_path else "''"
            parts.append(
                f"SELECT 'w', task_id, channel, type, value, {path}, idx FROM writes "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
            )
            params += key
        values: dict[bytes, Any] = {}
        rows: list[WriteRow] = []
        for kind, name, channel, type_, data, path, idx in await self.conn.execute_fetchall(
            " UNION ALL ".join(parts), params
        ):
            if kind == "b":
                values[name] = self.serde.loads_typed(_decompressed(type_, data))
            elif kind == "w":
                rows.append((name, channel, type_, data, path, idx))
            else:
                rows += [(name, ch, t, v, p, i) for i, ch, t, v, p in _unpack(data)]
        if hashes:
            self._remember(key[0], list(values))
        rows.sort(key=lambda r: writes_sort_key(r[4], r[0], r[5]))
        return values, [(task, ch, self.serde.loads_typed((t, v))) for task, ch, t, v, _, _ in rows]


def stored_bytes(path: Path | str) -> dict[str, int]:
    """Return the bytes a checkpoint file takes: ``file`` (with its WAL), then per table.

    The per-table figures (pages, indexes included) need SQLite's ``dbstat`` table; without
    it only ``file`` is given. For benchmarks: ``oldnew bench scale`` divides by the tasks.
    """
    db = Path(path)
    wal = db.with_name(db.name + "-wal")
    out = {"file": db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:  # built without dbstat
        rows = []
    finally:
        conn.close()
    return out | {str(name): int(size) for name, size in rows}


def _compressed(type_: str, data: bytes) -> tuple[str, bytes]:
    packed = zlib.compress(data)
    return (_ZLIB + type_, packed) if len(packed) < len(data) else (type_, data)


def _decompressed(type_: str, data: bytes) -> tuple[str, bytes]:
    if type_.startswith(_ZLIB):
        return type_[len(_ZLIB) :], zlib.decompress(data)
    return type_, data


def _unpack(packed: bytes) -> list[list[Any]]:
    return cast(list[list[Any]], ormsgpack.unpackb(zlib.decompress(packed)))
