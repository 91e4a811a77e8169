"""Readers and writers of published file formats, one module per source format."""
