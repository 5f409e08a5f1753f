"""The load benchmark (README, "Performance"): ``bench/run`` and ``bench/million.py``."""
