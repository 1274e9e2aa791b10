"""What works over any store: `open_store`, the command line, background cleanup."""
