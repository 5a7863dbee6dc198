"""``ufd-bench``: latency, throughput and peak RSS per precision, against the MatMul peak."""
