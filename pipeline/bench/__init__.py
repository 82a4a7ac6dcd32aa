"""The benchmark behind ``python -m jobs.bench``: inputs (``data``), the two timed sides (``sides``), mask agreement
(``agreement``), encoder throughput (``throughput``), peak memory (``memory``) and the report (``report``)."""
