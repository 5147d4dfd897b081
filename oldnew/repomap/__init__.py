"""Context that scales: what one coder or fixer call sees of the project, within a budget.

Chosen in order, until the budget of file-content tokens is spent: the files the task
touches (and the supporting files it names), the files of the tasks it depends on, the
files that import or are imported by those, then a map of the rest (each file's path and
its top-level definitions, ranked by how much the task's files refer to them). Every line
takes budget, listed files too, and the rendered section (frame included) is counted by the
model's counter. What does not fit is listed, never dropped silently; the model fetches any
file git does not ignore with ``ReadFile``, whole or by line ranges (one answer is capped).

Modules: :mod:`.tokens` (counting), :mod:`.symbols` (definitions), :mod:`.imports`
(who imports whom), :mod:`.index` (the project's files, cached by git blob id),
:mod:`.history` (files of earlier tasks), :mod:`.select` (the choice), :mod:`.read` (the
``ReadFile`` tool's answer).
"""
