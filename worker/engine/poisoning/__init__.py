"""Data poisoning: label flips, backdoors and clean-label poisons, their success, and the detectors."""
