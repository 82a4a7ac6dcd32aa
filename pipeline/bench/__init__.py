"""The benchmark behind ``samlabel bench``: the run (``benchmark``), inputs (``data``), the two timed sides
(``sides``), mask agreement (``agreement``), encoder throughput (``throughput``), peak memory (``memory``), the GPU
table (``gpu_table``) and the report (``report``)."""
