"""From a window's trajectories to a training step: groups (`groups`), trainable tokens
(`tokenization`, `standin_tokenizer`), judges (`judges/`), training backends (`backends/`), the
engine's writes (`batches`) and metrics to W&B (`tracking`)."""
