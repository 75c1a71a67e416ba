"""Files other trainers load by path (they import nothing else from rlaif)."""
