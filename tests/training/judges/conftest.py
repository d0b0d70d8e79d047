"""Judge tests never fetch litellm's remote price list and only talk to 127.0.0.1."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
