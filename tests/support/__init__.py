"""What several test files share: rigs, builders of configs and bridge
events, and the daemon as a child process.

``tests/`` is on ``sys.path`` while pytest runs (conftest.py sits there, no
``__init__.py``), so test files import ``support.<module>``.
"""
