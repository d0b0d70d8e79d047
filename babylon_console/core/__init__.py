"""Headless core, in folders in the order data flows (each imports only those below it; the
import-linter contracts in pyproject.toml enforce it): the base (`errors`, `config`, `clock`, `names`,
`stats`, `events`), `db/`, `game/`, `sim/`, `training/`, `checkpoints/`, `engine/` and `gateway/`,
`simgame/`.

Nothing under this package imports Textual (a test enforces it); the TUI and the CLI build on it.
"""

import os as _os

# litellm (imported by ART's RULER) fetches a remote price list at import unless told not to; the
# console must start offline and never reach out on its own.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# transformers (ART's tokenizer loader) warns on import that PyTorch is missing: true and expected
# on the offline path, where only its tokenizers are used.
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
