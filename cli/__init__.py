"""The `imfcodec` command line: one click command per file, gathered in main.py."""
