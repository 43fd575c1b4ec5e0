"""driftline.retrainer."""
