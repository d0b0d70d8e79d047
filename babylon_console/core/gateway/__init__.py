"""The model gateway: an OpenAI-compatible endpoint that serves agents the model the registry says.

- `routing`: the routing table (a snapshot of the registry) and the sticky assignment of agents to arms.
- `follower`: keeps the table in step with the registry (LISTEN/NOTIFY and a periodic re-read).
- `upstreams`: where each checkpoint is served (W&B inference, a vLLM, the offline stand-in).
- `app`: the aiohttp application (chat completions, models, health), errors in OpenAI's shape.
- `calllog`: every call logged in batches, off the request path, with bounded retention.
- `heartbeat`: one row per gateway process.
- `server`: one gateway process, all of the above together.
"""
