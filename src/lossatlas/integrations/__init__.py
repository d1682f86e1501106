"""Adapters that record the trajectory of a model trained by another framework, over
:class:`lossatlas.Recorder`: :mod:`.lightning` (``lightning.pytorch.Trainer``) and
:mod:`.huggingface` (``transformers.Trainer``). Each imports its framework when it is imported
itself, never before (``pip install lossatlas[lightning]`` or ``lossatlas[transformers]``)."""
