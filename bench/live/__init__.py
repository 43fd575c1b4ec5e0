"""Helpers of ``bench/worker_throughput.py``: subprocess control, backlogs, baseline apps.

``naive_faust.py`` and ``quix_app.py`` run as scripts (the Quix one in the baseline venv), so
the per-event logic they share lives in ``naive_logic.py``, which imports only ``schemas``,
``detectors`` and numpy/scipy.
"""
