"""samlabel: bulk auto-labeling of image buckets with EfficientViT-SAM on Ray.

Where the flow starts and in which order it runs (``samlabel label``, ``jobs/label.py``):

1. ``labeling.cli``: flags → a typed ``LabelConfig`` (``config``: sections, loading, range rules).
2. ``labeling.prepare``: rules, weights verified on the driver, prompt model, input plan, settings fingerprint.
3. ``labeling.output``: the output folder checked (fresh, resumable, complete) and marked.
4. ``labeling.run``: the images not done stream through ``operators.graph`` (read → decode → [detect] → segment →
   records → sink), then the commit (``io.commit``) writes COCO, the report, run.json and ``_SUCCESS``.
5. ``labeling.summary``: the result line, the JSON summary and the exit code.

Packages: ``segment`` (SAM algorithms on a runtime: grid, boxes, masks, prompts), ``prompts`` (prompt sources:
yolo, autoppn), ``models`` (what is computed), ``runtime`` (how it runs), ``io`` (storage, listing, tables, commit),
``nightly``, ``report``, ``evaluation``, ``datasets``, ``bench``, ``train`` (``sam``, ``autoppn``). The root keeps
the shared helpers: ``schema`` (column names), ``ids``, ``redact``, ``timing``.
"""
