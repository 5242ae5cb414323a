"""Backdoor repair: remove a trojan from a trained model with a small clean set, no poisoned data."""
