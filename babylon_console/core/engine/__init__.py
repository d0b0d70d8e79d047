"""The training engine: select ready windows, build groups, judge, train, register, repeat.

Modules (imported by what they hold; this package re-exports nothing):

- `loop`: `Engine`, one run's lifecycle and its iterations; pause, resume, stop;
- `run_config`: `EngineConfig`, one run's settings (the tunables are `core.config.EngineSettings`);
- `run_state`: `EngineState`, `RunSummary`, the shape of the event emitter handed to the parts;
- `session`: `TrainingSession`, the backend, the ART model, the tokenizer, W&B, served names;
- `backend_protocol`: `TrainingBackend`, what the engine calls on a backend;
- `guard`: `RunGuard`, the model's lock and write fence, the watched side tasks (heartbeat,
  command listener, announcements), the ride-out of a database outage; `EngineLocked`;
- `stages`: select windows, read them into groups, judge them;
- `training`: train a step, register its checkpoint, evaluate it; repair what a crash left;
- `rollout_watch`: what the rollout gate says about the rollout in progress, and automatic rollback.
- `health_watch`: each registered step's training health, stored and checked against the alarm
  rules; alarms recorded and announced, the engine paused on one with `pause_on_alarm`;
- `runs`: the run records (`console_runs`), their liveness, and each model's write fence;
- `control`: pause, resume and stop sent through the database to an engine elsewhere.

Guarantees:
- one engine per model: a PostgreSQL advisory lock held for the run; a second engine is refused;
- a window is never trained twice (unless `force`), and only closed, ready windows are selected;
- a crash between "backend wrote checkpoint N" and "checkpoint N registered" is repaired on the
  next start from the backend's step: no duplicate batch, no lost checkpoint;
- exactly the trajectories trained on are marked `usedInTraining`;
- no empty step: a step in which the backend trained nothing is not a checkpoint (the batch fails
  with the reason, its windows stay free, nothing is marked used);
- identity per backend: batches, lock, checkpoint ids and trained windows are keyed by the
  training key `<backend>:<model name>`;
- a side task that fails (heartbeat, command listener) stops the run, named in its reason.
"""
