//! The gRPC contract between the gRPC path's HTTP entry (client) and its server (store side),
//! generated from `proto/ingest.proto` at build time.

/// `ingest.v1`: `Ingest::Store` with its messages, and `RecordBatch`, the records one broker
/// message carries.
pub mod ingest {
    #![allow(clippy::all, missing_docs)] // generated code
    tonic::include_proto!("ingest.v1");
}
