"""GDTS benchmark: ``python -m bench.run --help``.

Measures GDTS from the outside: every job appends one line to a records file when it starts, and
the report is computed from that file, /proc and etcd's own metrics, never from GDTS's logs.
"""
