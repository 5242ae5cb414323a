"""The `gauntlet` command: server commands (api, worker, serve, demo, db, keys) and the client's."""
