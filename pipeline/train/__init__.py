"""Training the AutoPPN proposal head on a frozen encoder (``autoppn``, ``samlabel train-autoppn``) and SAM
end to end on COCO instance masks (``sam``, ``samlabel train-sam``)."""
