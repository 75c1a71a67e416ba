"""Turning judgments into preferences: bias statistics, corrections and Bradley-Terry scores."""
