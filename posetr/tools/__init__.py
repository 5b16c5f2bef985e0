"""Developer tools run as ``python -m posetr.tools.<name>`` (see each module)."""
