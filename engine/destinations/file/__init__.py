"""File destination: one file per message, written atomically."""

from __future__ import annotations

from engine.config import Field
from engine.config.fieldtypes import DirPath
from engine.config.scalars import String
from engine.destinations.base import Destination, destination_kind


@destination_kind(
    "file",
    "Write each message to its own file in a directory.",
    (
        Field("file", DirPath(), "The directory.", required=True, example="out/lab"),
        Field("filename", String(), "File name template: {control_id}, {message_id}, {type}, "
              "{trigger}, {channel}, {timestamp}.", default="{control_id}.hl7"),
    ),
)  # fmt: skip
class FileDestination(Destination):
    def sender(self, ctx):
        from engine.destinations.file.sender import FileSender

        return FileSender(self.config, ctx)
