"""Pure view widgets: they show what they are given and emit what the user asks for, and start no jobs
(the sessions in :mod:`dgkip_gui.sessions` drive them)."""
