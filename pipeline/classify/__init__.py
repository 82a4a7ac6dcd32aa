"""Names for masks: a zero-shot image-text classifier (CLIP or SigLIP) scores a crop of each kept mask against a class
list, in the segment actor, on its device (:mod:`pipeline.classify.classifier`, :mod:`pipeline.classify.crops`,
:mod:`pipeline.classify.naming`)."""
