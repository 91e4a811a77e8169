"""vlp: BERT-style vision-language pre-training.

The library (models, objectives, tasks, data) lives here; the training loop and
the command line live in :mod:`vlp.train` and are never imported by the library.
"""

__version__ = "0.1.0"
