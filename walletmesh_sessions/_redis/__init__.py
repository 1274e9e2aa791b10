"""The Redis family: one server, Sentinel and Cluster."""
