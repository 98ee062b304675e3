"""The ColorRL method itself: coloring in T binary steps, reward targets and rewards, the
number of steps, and the post-processing from colors to instances (docs/method.md)."""
