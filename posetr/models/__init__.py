"""Models served by posetr's kernels: backbone, transformer parts, PETR, matcher and criterion."""
