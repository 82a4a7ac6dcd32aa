"""SAM algorithms on a runtime, without Ray or storage: geometry and preprocessing, prompt batches, masks and
RLE, the batched predictor, the reference (official-semantics) predictor, the grid generator with its filters on
low-res logits, and box prompts."""
