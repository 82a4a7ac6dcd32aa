"""AutoPPN: a small proposal head on the SAM image embedding that predicts point and box prompts (segment everything).

``model`` (the head and its config card), ``targets`` (training targets from masks), ``boxes`` (box encoding),
``nms`` (Point-NMS and top-N), ``checkpoint`` (weights + card loading), ``segment`` (prompts → masks in the actor).
"""
