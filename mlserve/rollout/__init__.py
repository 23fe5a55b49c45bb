"""Update and roll back on the fly: move TF Serving version labels with no failed request.

`actions` moves labels (promote, canary, rollback) through the server's
HandleReloadConfigRequest, `configfile` edits the model config file in place (lock, backup,
atomic writes), `history` records every move, `gate` measures accuracy on held-out digits,
`serverlink` talks to the server, `target` finds which file and server a command is about.
"""
