"""What a stored study says: the report (:mod:`.report`: summary, tables, HTML page), its figures
(:mod:`.figures`) and which hyperparameters mattered (:mod:`.importance`).

Nothing is imported here (matplotlib loads only with the figures); ``jt.report`` and
``jt.figures`` are these modules.
"""
