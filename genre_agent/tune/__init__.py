"""Tuning the local model as a ranker of one catalog: LoRA on CPU, saved as a GGUF adapter (`genre-agent tune`)."""
