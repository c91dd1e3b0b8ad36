"""DevTeam's benchmark suite: `uv run python -m benchmarks --help`.

Every case measures its floor in the same run (the least the same work can cost
on this machine with the same parts), so results are ratios that hold on a
noisy machine. Results print as a table of medians over the rounds and are
written as JSON.
"""
