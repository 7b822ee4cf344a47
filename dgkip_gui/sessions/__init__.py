"""The window's background jobs, one session class per kind: :class:`~dgkip_gui.sessions.load.LoadSession`
(a dataset), :class:`~dgkip_gui.sessions.run.RunSession` (a distillation) and
:class:`~dgkip_gui.sessions.transfer.TransferSession` (networks trained on an export), sharing the
:class:`~dgkip_gui.sessions.base.JobHost` that runs one job at a time (see :mod:`dgkip_gui.sessions.base`)."""
