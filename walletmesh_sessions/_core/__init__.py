"""The shared core: values, rules, the wire format, the seams, deadlines."""
