"""Where a source was read up to: the position the DataPipeline commits after a batch.

A file is read by byte offset, checked against the file's inode so that a replaced file is
noticed (`{"offset": 1234, "inode": 56}` in the files); a Kafka topic by the next offset of
each partition (`{"offsets": {"0": 12, "1": 40}}`, partitions as strings because JSON keys
are). No position (`{}` in the files, None here) means nothing was committed yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from movierec.core.errors import DataValidationError


@dataclass(frozen=True)
class FilePosition:
    offset: int = 0  # the byte after the last complete line read
    inode: int | None = None  # the file's inode when it was read

    def to_json(self) -> dict[str, object]:
        return {"offset": self.offset, "inode": self.inode}


@dataclass(frozen=True)
class KafkaPosition:
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset

    def to_json(self) -> dict[str, object]:
        return {"offsets": {str(p): o for p, o in sorted(self.offsets.items())}}


SourcePosition = FilePosition | KafkaPosition


def position_to_json(position: SourcePosition | None) -> dict[str, object]:
    return {} if position is None else position.to_json()


def position_from_json(raw: object, where: str = "position") -> SourcePosition | None:
    """A position as the files hold it; `DataValidationError` naming `where` when it is not
    one."""
    if raw is None or raw == {}:
        return None
    try:
        if isinstance(raw, dict) and "offsets" in raw and isinstance(raw["offsets"], dict):
            return KafkaPosition({int(p): int(o) for p, o in raw["offsets"].items()})
        if isinstance(raw, dict) and "offset" in raw:
            inode = raw.get("inode")
            return FilePosition(int(raw["offset"]), None if inode is None else int(inode))
    except (TypeError, ValueError):
        pass
    raise DataValidationError(f"{where}: not a source position: {raw!r:.80}")
