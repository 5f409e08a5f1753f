"""The load benchmark (DESIGN §9): ``bench/run`` and ``bench/million.py``; see bench/README.md."""
