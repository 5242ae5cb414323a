"""Model-level backdoor scans: is this trained model trojaned, and which class does its trigger target."""
