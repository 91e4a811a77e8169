"""The built-in synthetic world: coloured shapes, their captions and their annotations.

Each image is a scene of 2–6 non-overlapping shapes drawn with Pillow. The scene's meaning
lives in :class:`~vlp.world.scene.Scene` alone; the captions and the COCO / VQA v2 / SNLI-VE /
NLVR2 / RefCOCO / VCR files of :mod:`vlp.world.tasks` are all derived from its answers, so every
text is true of its image (or, for a task's wrong options, false of it).

A world is written in the published formats and read back with :mod:`vlp.data.readers` like
real data; :func:`vlp.world.make.make_world` builds one, and :mod:`vlp.world.detector` turns it
into a region store. Every image is generated from its own seed ``(seed, image_id)``, so output
is identical for any number of workers.

Modules, each importing only those above it: ``vocab`` (the words), ``scene`` (what a scene
means), ``generate`` (random scenes), ``render`` (pixels), ``captions``, ``files`` (names and
writers), ``tasks.*`` (one module per downstream task), ``make`` (a whole world);
``detector`` (the pseudo-detector) reads a written world through :mod:`vlp.data`.
"""
