"""One router per resource; each is a thin layer over the store and the scheduler."""
