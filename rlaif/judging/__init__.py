"""Asking judges durably: planning requests and their cache keys, claims between runs on
one store, the store itself, online / provider-batch / Ray dispatch under one budget, and
the judge as a reward. Every paid judgment in the program goes through here."""
