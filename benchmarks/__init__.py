"""Benchmarks for issue 7: `python -m benchmarks [--smoke]` prints one table.

throughput  1. events/s of our whole path against panoramisk's bare parsing
            (its docstring keeps the profile and what was optimised)
labbench    2. events per call with and without the AMI filter, 4. hangup ->
            upload latency and its split, 6. 200 calls at once (real Asterisk)
memory      3. bytes per call in progress, RSS over 100,000 finished calls
upload      5. peak RSS and throughput of a 500 MB upload
streams     big AMI streams from the real captures, quickly
common      the table, the machine, /proc helpers

Results, the machine and how to run them: docs/BENCHMARKS.md.
"""
