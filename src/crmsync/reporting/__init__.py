"""What a run shows while it runs (progress) and what it leaves when it ends (a JSON result)."""
