"""Test helpers that users can run too: a loopback judge server that injects faults."""
