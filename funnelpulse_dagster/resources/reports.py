"""Where reports are written (FUNNELPULSE_REPORTS, default $FUNNELPULSE_HOME/reports)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class ReportsResource(ConfigurableResource):
    """A folder for generated reports. Local (or a mounted volume): the report is one HTML file
    a browser opens from disk, and the Dagster UI links to it."""

    root: str = Field(description="Folder the report files are written to.")

    def write(self, name: str, text: str) -> Path:
        if "://" in self.root and not self.root.startswith("file://"):
            raise ValueError(
                f"reports are written to a local folder; {self.root!r} is remote. Point FUNNELPULSE_REPORTS "
                "at a local or mounted folder."
            )
        folder = Path(self.root.removeprefix("file://")).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        # write beside, then rename: a reader never sees half a report
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        return path
