"""Build backends of the Binder service, one per module behind `base.Builder`: ``venv``
(the embedded default), ``docker`` (repo2docker with a local engine) and
``kubernetes`` (a repo2docker build pod)."""
