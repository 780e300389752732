"""The search space: named hyperparameters on their own scales (:mod:`.params`: ``Float``, ``Int``,
``Choice``, masked widths), the :class:`Space` that maps them to and from the unit cube
(:mod:`.space`), and the ``hp`` mapping a trial reads (:mod:`.hyperparameters`).

``from jaxtune.space import Space, Float, Int, Choice, Masked`` is the short form.
"""

from jaxtune.space.params import SCALES, Choice, Float, Int, Masked, bucket_size
from jaxtune.space.space import Space

__all__ = ["Float", "Int", "Choice", "Space", "Masked", "SCALES", "bucket_size"]
