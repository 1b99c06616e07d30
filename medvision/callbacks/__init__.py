"""Lightning callbacks of medvision."""
