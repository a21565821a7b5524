"""One module per verb, each joining io + models + tasks + library into what a user asks:

- :mod:`.classify` — ``classify`` / ``iter_classify``: videos against a label list.
- :mod:`.index` — ``index``: videos into a library.
- :mod:`.search` — ``search``: moments of a library by text or image.
- :mod:`.localize` — ``localize``: when each action happens in one video.
- :mod:`.evaluate` — ``evaluate``: a research protocol on a dataset.

Every verb takes its inputs the same way (:mod:`.common`: files, folders, globs, ``~``) and
the CLI and the web app call these same functions. The functions are exported from
:mod:`videolens` itself (``videolens.classify`` ...), not from here, so that each submodule
keeps its own name.
"""
