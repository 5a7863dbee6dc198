"""ufd on the Open Inference Protocol (KServe v2): ``ufd-serve BUNDLE --protocol v2``.

The protocol of Triton, KServe, Seldon MLServer and OpenVINO Model Server, spoken
by KServe's own ``ModelServer`` (extra ``ufd[kserve]``), over REST and gRPC:
:mod:`.tensors` turns requests into images and records into tensors,
:mod:`.model` is the ``kserve.Model`` over ufd-serve's engine, :mod:`.server`
starts it. Nothing in the plain runtime imports this package.
"""
