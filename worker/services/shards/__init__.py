"""One job's work split into shards that any worker runs: plans, guarded state, the run and the merge."""
