"""A study and what it is made of: the study a run opens (:mod:`.study`), the SQLite file and its
lock (:mod:`.sqlite_files`), what is stored and how (:mod:`.storage`), population checkpoints
(:mod:`.checkpoints`) and the one record of a trial (:mod:`.records`).

Nothing is imported here: each module is imported by its own name (``jaxtune.study.storage``),
so the lower modules load without the study above them.
"""
