"""The header line naming what every pane is about, as k9s names its context: the model, its
backend and the database (`model babylon-agent · backend offline · db babylon (embedded)`)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ContextBar(Static):
    DEFAULT_CSS = """
    ContextBar {
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.context: tuple[str, str, str] = ("", "", "")

    def show(self, model: str, backend: str, database: str) -> None:
        if (model, backend, database) == self.context:
            return
        self.context = (model, backend, database)
        self.update(Text.assemble(("model ", "dim"), (model, "bold"), ("  ·  backend ", "dim"), (backend, "bold"),
                                  ("  ·  db ", "dim"), (database, "bold")))

    @property
    def text(self) -> str:
        model, backend, database = self.context
        return f"model {model} · backend {backend} · db {database}"
