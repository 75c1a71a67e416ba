"""Finding and loading models (the embedded GGUF, hub ids, local paths) and choosing the
device and dtype they run with."""
