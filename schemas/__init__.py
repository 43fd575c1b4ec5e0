"""driftline.schemas."""
