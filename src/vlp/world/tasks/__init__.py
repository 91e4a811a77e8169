"""The world's downstream task files, one module per dataset, derived from
:class:`~vlp.world.scene.Scene` alone.

Every file is in its dataset's published format, so the readers of the real data read it
unchanged. Each image draws from its own random streams (``vqa``, ``snli_ve``, ``refcoco``,
``vcr``; ``nlvr2`` per set of images), so the files are byte-identical for equal seeds. The
split of an image is its Karpathy split (retrieval uses that split file directly).
"""
