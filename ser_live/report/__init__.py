"""Session reports (``ser-report``, ``ser-live --report``): a PNG and a Markdown summary from window events.

Needs the ``[report]`` extra (matplotlib); the live monitor never imports this package unless ``--report`` is given.
"""
