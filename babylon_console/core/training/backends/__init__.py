"""Training backends: ART's `serverless` and `local`, and this project's CPU `offline` stand-in."""
