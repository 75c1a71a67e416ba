"""Operating rlaif around runs: nightly jobs, on-policy rounds, exports and the reward
server."""
