"""What people use: ``ser-live`` (``cli``), the terminal dashboard, the enrolment session and ``ser-profile``."""
