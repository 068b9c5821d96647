"""The export's files: Hive-style month partitions, written in row groups, and the manifest.

Layout: ``<root>/<service>/<EventType>/month=YYYY-MM/part-<run>-<n>.parquet`` (the month of
the recorded time in Asia/Shanghai). A run writes ``.pending`` files, renames them when they are
complete, and writes the manifest last: it names every file that belongs to the export and the
high-water mark of each service. Files it does not name (a run that died before its manifest)
are removed at the start of the next run, which exports their events again: a crash never
skips nor duplicates an event.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cunzhi_platform.clock import SHANGHAI

from .columns import TableSpec

MANIFEST = "_cunzhi_export.json"
EMPTY_PARTITION = "month=none"
"""Where a table with no event yet gets a file without rows, so a query naming it still runs."""


class ExportError(RuntimeError):
    """The export cannot go on; the message says why."""


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One run at a time per directory: two would sweep each other's files away."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"another export is writing {root}; try when it is done") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Manifest:
    source: str
    """``store`` or ``kafka``: one directory is exported from one source only."""
    marks: dict[str, Any] = field(default_factory=dict)
    """Per service, where the next run starts (a store checkpoint, or Kafka offsets)."""
    files: set[str] = field(default_factory=set)
    """Every file of the export, relative to the root."""

    @classmethod
    def load(cls, root: Path, source: str) -> Manifest:
        path = root / MANIFEST
        if not path.exists():
            return cls(source)
        data = json.loads(path.read_text())
        if data["source"] != source:
            raise ExportError(
                f"{root} holds an export from the {data['source']}; export from the {source} "
                "into another directory (the two would repeat each other's events)"
            )
        return cls(data["source"], data["marks"], set(data["files"]))

    def save(self, root: Path) -> None:
        """Atomically: a reader sees the old manifest or the new one, never half of one."""
        data = {"format": 1, "source": self.source, "marks": self.marks}
        text = json.dumps({**data, "files": sorted(self.files)}, indent=1, ensure_ascii=False)
        tmp = root / f".{MANIFEST}.{uuid.uuid4().hex}"
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(root / MANIFEST)

    def sweep(self, root: Path, services: list[str]) -> list[Path]:
        """Remove the files of the services no manifest names: left by a run that died."""
        removed = [p for p in root.glob(f".{MANIFEST}.*") if p.is_file()]  # a manifest half-written
        for path in removed:
            path.unlink()
        for service in services:
            for path in sorted((root / service).rglob("*")):
                stray = path.suffix in (".parquet", ".pending")
                if stray and path.is_file() and str(path.relative_to(root)) not in self.files:
                    path.unlink()
                    removed.append(path)
        return removed


class PartitionedWriter:
    """Rows in, Parquet row groups out, with memory bounded by row counts, not by history.

    A (table, month) buffer is written as a row group when it holds ``row_group_rows`` rows;
    when all buffers together hold ``max_buffered`` rows, every one is written. At most
    ``max_open`` files are open; the least recently used is closed (a later row of its month
    starts another file).
    """

    def __init__(
        self,
        root: Path,
        *,
        row_group_rows: int = 50_000,
        max_buffered: int = 200_000,
        max_open: int = 32,
    ) -> None:
        self.root = root
        self.run = uuid.uuid4().hex[:12]
        self.row_group_rows = row_group_rows
        self.max_buffered = max_buffered
        self.max_open = max_open
        self._buffers: dict[tuple[TableSpec, str], list[dict[str, Any]]] = {}
        self._buffered = 0
        self._open: OrderedDict[tuple[TableSpec, str], tuple[Path, pq.ParquetWriter]] = (
            OrderedDict()
        )
        self._pending: list[Path] = []
        self._count = 0
        self.rows = 0

    def add(self, table: TableSpec, row: dict[str, Any]) -> None:
        local = row["recorded_at"].astimezone(SHANGHAI)
        key = (table, f"month={local.year:04d}-{local.month:02d}")
        buffer = self._buffers.setdefault(key, [])
        buffer.append(row)
        self._buffered += 1
        self.rows += 1
        if len(buffer) >= self.row_group_rows:
            self._write(key)
        elif self._buffered >= self.max_buffered:
            for k in list(self._buffers):
                self._write(k)

    def empty(self, table: TableSpec) -> None:
        """A file without rows for ``table``, which has none yet."""
        key = (table, EMPTY_PARTITION)
        self._writer(key)

    def _write(self, key: tuple[TableSpec, str]) -> None:
        rows = self._buffers.pop(key, [])
        if not rows:
            return
        self._buffered -= len(rows)
        self._writer(key).write_table(pa.Table.from_pylist(rows, schema=key[0].schema))

    def _writer(self, key: tuple[TableSpec, str]) -> pq.ParquetWriter:
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key][1]
        if len(self._open) >= self.max_open:
            _, (_, oldest) = self._open.popitem(last=False)
            oldest.close()
        table, partition = key
        folder = self.root / table.service / table.name / partition
        folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = folder / f"part-{self.run}-{self._count:05d}.parquet.pending"
        writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        self._open[key] = (path, writer)
        self._pending.append(path)
        return writer

    def finish(self) -> list[str]:
        """Write what is buffered, close every file and give it its final name.

        Returns the files (relative to the root) for the manifest to name.
        """
        for key in list(self._buffers):
            self._write(key)
        while self._open:
            _, (_, writer) = self._open.popitem(last=False)
            writer.close()
        done = []
        for path in self._pending:
            final = path.with_suffix("")  # drops .pending
            path.replace(final)
            done.append(str(final.relative_to(self.root)))
        self._pending = []
        return done
