"""Provider batch APIs (OpenAI Batch API, Anthropic Message Batches) for API judges: half
the price of online calls, results within 24 hours, collected by a later run."""
