//! The Caracal server: ingest of flow updates (Goldmane `FlowCollector`, Caracal's batched
//! protocol), the 15 s bucket ring holding the hot hour, and the query APIs over it (gRPC,
//! HTTP/JSON, SSE, Prometheus metrics).

pub mod ring;
