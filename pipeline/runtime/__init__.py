"""How a model runs: its weights (:mod:`.weights`), the backend built inside each worker (:mod:`.load`: torch,
onnxruntime or TensorRT behind the :class:`.base.SamRuntime` protocol), the precision ``auto`` picks
(:mod:`.auto_precision`, gated by :mod:`.accuracy` on what :mod:`.capability` probes),
and GPU memory settings (:mod:`.allocator`)."""
