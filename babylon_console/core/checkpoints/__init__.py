"""What follows a checkpoint once trained: the registry (`registry`), where it answers
(`endpoints`), held-out evaluation (`evaluation`, `prompt_eval`), the live A/B evidence (`evidence`),
promotion on evidence (`promotion`) and the database's hold-out (`holdout`)."""
