"""Where released rows go besides reports: Prometheus remote-write, OTLP metrics, CSV/Parquet files.

* :mod:`collector.outputs.series` — pure: stored rows to samples, with the noise companions;
* :mod:`collector.outputs.remote_write` — the remote-write 1.0 body (protobuf + snappy) and its POST;
* :mod:`collector.outputs.otlp` — the same samples as an OTLP ``ExportMetricsServiceRequest`` over gRPC;
* :mod:`collector.outputs.push` — a durable cursor per output, retries with capped jittered backoff;
* :mod:`collector.outputs.files` — ``hush-collector export`` as CSV or Parquet.
"""
