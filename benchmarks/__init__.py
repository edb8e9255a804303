"""Speed and memory of the reference against torch (`make bench`); not part of the test gate."""
